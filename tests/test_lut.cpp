// The LUT (lut.h): the built-in table, JSON round trips, the shipped data/lut/default.json, and an
// error naming the source, the JSON path and the allowed values for every kind of bad input.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "dynamicrad/error.h"
#include "dynamicrad/lut.h"
#include "fifo_support.h"
#include "writer_support.h"

namespace dynamicrad {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

void expect_same(const Lut& a, const Lut& b) {
  EXPECT_EQ(a.calibrated_for, b.calibrated_for);
  ASSERT_EQ(a.entries.size(), b.entries.size());
  for (std::size_t i = 0; i < a.entries.size(); ++i) {
    SCOPED_TRACE("entry " + std::to_string(i));
    const LutEntry& x = a.entries[i];
    const LutEntry& y = b.entries[i];
    EXPECT_EQ(x.regime, y.regime);
    EXPECT_EQ(x.prior.gamma, y.prior.gamma);
    EXPECT_EQ(x.prior.lambda, y.prior.lambda);
    EXPECT_EQ(x.prior.theta_m, y.prior.theta_m);
    EXPECT_EQ(x.prior.theta_c, y.prior.theta_c);
    EXPECT_EQ(x.prior.dense_adjacent, y.prior.dense_adjacent);
    EXPECT_EQ(x.prior.first_frame_sink, y.prior.first_frame_sink);
    EXPECT_EQ(x.selection.mode, y.selection.mode);
    if (x.selection.mode == SelectionMode::static_ratio) {
      EXPECT_EQ(x.selection.r_near, y.selection.r_near);
      EXPECT_EQ(x.selection.r_far, y.selection.r_far);
    } else {
      EXPECT_EQ(x.selection.tau_near, y.selection.tau_near);
      EXPECT_EQ(x.selection.tau_far, y.selection.tau_far);
    }
  }
}

// A fresh empty directory for one test.
fs::path scratch_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() /
                       ("dynamicrad_test_lut_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The built-in table as editable JSON.
Json default_json() { return Json::parse(lut_to_json(default_lut())); }

// Parses `text` as "lut.json" and returns the error message (fails the test when it parses).
std::string parse_error(const std::string& text) {
  try {
    parse_lut(text, "lut.json");
  } catch (const Error& e) {
    EXPECT_EQ(e.field().rfind("lut.json", 0), 0u)
        << "field does not start with the source: " << e.field();
    return e.what();
  }
  ADD_FAILURE() << "parse_lut accepted:\n" << text;
  return "";
}

void expect_mentions(const std::string& message, std::initializer_list<const char*> parts) {
  for (const char* part : parts) {
    EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' missing in: " << message;
  }
}

TEST(Lut, DefaultHasEveryRegimeAndModeAndIsValid) {
  const Lut lut = default_lut();
  EXPECT_EQ(lut.entries.size(), 6u);
  for (MotionRegime regime : {MotionRegime::low, MotionRegime::mid, MotionRegime::high}) {
    for (SelectionMode mode : {SelectionMode::static_ratio, SelectionMode::dynamic_threshold}) {
      const LutEntry& e = lut.find(regime, mode);
      EXPECT_EQ(e.regime, regime);
      EXPECT_EQ(e.selection.mode, mode);
      EXPECT_NO_THROW(validate(e.prior));
      EXPECT_NO_THROW(validate(e.selection));
    }
  }
}

TEST(Lut, DefaultModePairsRegimes) {
  EXPECT_EQ(default_mode(MotionRegime::low), SelectionMode::static_ratio);
  EXPECT_EQ(default_mode(MotionRegime::mid), SelectionMode::static_ratio);
  EXPECT_EQ(default_mode(MotionRegime::high), SelectionMode::dynamic_threshold);
}

TEST(Lut, DefaultWidensWithMotion) {
  const Lut lut = default_lut();
  const auto sr = SelectionMode::static_ratio;
  EXPECT_LT(lut.find(MotionRegime::low, sr).prior.gamma,
            lut.find(MotionRegime::mid, sr).prior.gamma);
  EXPECT_LT(lut.find(MotionRegime::mid, sr).prior.gamma,
            lut.find(MotionRegime::high, sr).prior.gamma);
}

TEST(Lut, FindMissingRowThrows) {
  Lut lut;
  lut.entries.push_back(default_lut().entries.front());
  try {
    lut.find(MotionRegime::high, SelectionMode::dynamic_threshold);
    FAIL() << "no throw";
  } catch (const Error& e) {
    expect_mentions(e.what(), {"high", "dynamic-threshold"});
  }
}

TEST(Lut, JsonRoundTripIsExact) {
  Lut lut = default_lut();
  lut.entries[0].prior.gamma = 0.123456789012345678;
  lut.entries[0].prior.dense_adjacent = true;
  lut.entries[1].selection.tau_far = 1.0 / 7.0;
  lut.entries[4].prior.lambda = 0.0625;
  expect_same(parse_lut(lut_to_json(lut), "memory"), lut);
}

TEST(Lut, CalibratedForRoundTripsAndIsOptional) {
  EXPECT_EQ(default_lut().calibrated_for, "wan2.1-14b-720p");
  Lut lut = default_lut();
  lut.calibrated_for = "hunyuan-720p";
  EXPECT_EQ(parse_lut(lut_to_json(lut), "memory").calibrated_for, "hunyuan-720p");
  Json json = default_json();
  json.erase("calibrated_for");
  const Lut unsaid = parse_lut(json.dump(), "memory");
  EXPECT_TRUE(unsaid.calibrated_for.empty());
  EXPECT_EQ(lut_to_json(unsaid).find("calibrated_for"), std::string::npos);
}

TEST(LutErrors, CalibratedForMustBeAKnownPreset) {
  Json json = default_json();
  json["calibrated_for"] = "wan9-720p";
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: calibrated_for", "wan9-720p", "unknown preset", "wan2.1-14b-720p"});
  json["calibrated_for"] = 720;
  expect_mentions(parse_error(json.dump()), {"lut.json: calibrated_for", "expected a string"});
}

TEST(Lut, JsonHoldsOnlyTheModesSelectionFields) {
  const Json json = default_json();
  for (const Json& row : json["rows"]) {
    if (row["mode"] == "static-ratio") {
      EXPECT_TRUE(row["selection"].contains("r_near"));
      EXPECT_FALSE(row["selection"].contains("tau_near"));
    } else {
      EXPECT_TRUE(row["selection"].contains("tau_near"));
      EXPECT_FALSE(row["selection"].contains("r_near"));
    }
  }
}

TEST(Lut, SaveAndLoadRoundTripLeavesNoTemporary) {
  const fs::path dir = scratch_dir("save");
  const fs::path path = dir / "table.json";
  Lut lut = default_lut();
  lut.entries.resize(3);
  save_lut(lut, path.string());
  expect_same(load_lut(path.string()), lut);
  save_lut(default_lut(), path.string());  // replaces an existing file
  expect_same(load_lut(path.string()), default_lut());
  EXPECT_TRUE(dr_test::temporaries(dir).empty());
  fs::remove_all(dir);
}

TEST(Lut, ShippedDefaultMatchesBuiltIn) {
  const char* data = std::getenv("DYNAMICRAD_DATA");
  ASSERT_NE(data, nullptr) << "DYNAMICRAD_DATA is not set";
  const fs::path path = fs::path(data) / "lut" / "default.json";
  ASSERT_TRUE(fs::exists(path)) << path;
  expect_same(load_lut(path.string()), default_lut());
  EXPECT_EQ(read_text(path), lut_to_json(default_lut()))
      << "regenerate with: dynamicrad lut --out data/lut/default.json";
}

TEST(LutErrors, MalformedJsonGivesThePosition) {
  const std::string message =
      parse_error("{\n  \"format\": \"dynamicrad-lut\",\n  \"version\": \n}");
  expect_mentions(message, {"lut.json", "malformed JSON", "line 4"});
}

TEST(LutErrors, NumberOverflowIsMalformed) {
  std::string text = lut_to_json(default_lut());
  const std::size_t version = text.find("\"version\": 1");
  ASSERT_NE(version, std::string::npos);
  text.replace(version + 11, 1, "1e400");
  expect_mentions(parse_error(text), {"lut.json", "malformed JSON", "1e400"});
}

TEST(LutErrors, TopLevelMustBeAnObject) {
  expect_mentions(parse_error("[1, 2]"), {"lut.json", "expected an object", "an array"});
}

TEST(LutErrors, MissingOrWrongFormat) {
  Json json = default_json();
  json.erase("format");
  expect_mentions(parse_error(json.dump()), {"lut.json: format", "missing", "\"dynamicrad-lut\""});
  json["format"] = "other-lut";
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: format = \"other-lut\"", "allowed value is \"dynamicrad-lut\""});
}

TEST(LutErrors, MissingOrWrongVersion) {
  Json json = default_json();
  json.erase("version");
  expect_mentions(parse_error(json.dump()), {"lut.json: version", "missing", "allowed value is 1"});
  json["version"] = 2;
  EXPECT_EQ(parse_error(json.dump()), "lut.json: version = 2: allowed value is 1");
  json["version"] = "1";
  expect_mentions(parse_error(json.dump()), {"lut.json: version = \"1\"", "allowed value is 1"});
}

TEST(LutErrors, RowsMustBeANonEmptyArray) {
  Json json = default_json();
  json.erase("rows");
  expect_mentions(parse_error(json.dump()), {"lut.json: rows", "missing", "array"});
  json["rows"] = Json::object();
  expect_mentions(parse_error(json.dump()), {"lut.json: rows", "expected an array", "an object"});
  json["rows"] = Json::array();
  expect_mentions(parse_error(json.dump()), {"lut.json: rows", "at least one row"});
  json["rows"] = Json::array({3});
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[0]", "expected an object", "a number"});
}

TEST(LutErrors, UnknownFieldsAreRejectedEverywhere) {
  Json json = default_json();
  json["comment"] = "typo";
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: comment", "unknown field", "format, version, calibrated_for, rows"});
  json = default_json();
  json["rows"][1]["note"] = 1;
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[1].note", "unknown field", "regime, mode, prior, selection"});
  json = default_json();
  json["rows"][0]["prior"]["gama"] = 1.0;
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[0].prior.gama", "unknown field", "gamma, lambda, theta_m"});
}

TEST(LutErrors, SelectionFieldsMustMatchTheMode) {
  Json json = default_json();
  ASSERT_EQ(json["rows"][0]["mode"], "static-ratio");
  json["rows"][0]["selection"]["tau_near"] = 0.01;
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[0].selection.tau_near", "unknown field", "r_near, r_far"});
  json = default_json();
  ASSERT_EQ(json["rows"][1]["mode"], "dynamic-threshold");
  json["rows"][1]["selection"] = {{"r_near", 0.5}, {"r_far", 0.2}};
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[1].selection.tau_near", "missing", "number"});
}

TEST(LutErrors, MissingFields) {
  Json json = default_json();
  json["rows"][2]["prior"].erase("theta_c");
  expect_mentions(parse_error(json.dump()), {"lut.json: rows[2].prior.theta_c", "missing"});
  json = default_json();
  json["rows"][3].erase("selection");
  expect_mentions(parse_error(json.dump()), {"lut.json: rows[3].selection", "missing"});
  json = default_json();
  json["rows"][0].erase("regime");
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[0].regime", "missing", "low, mid, high"});
}

TEST(LutErrors, WrongTypes) {
  Json json = default_json();
  json["rows"][0]["prior"]["gamma"] = "1";
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[0].prior.gamma", "expected a number", "a string"});
  json = default_json();
  json["rows"][0]["prior"]["first_frame_sink"] = 1;
  expect_mentions(parse_error(json.dump()), {"lut.json: rows[0].prior.first_frame_sink",
                                             "expected true or false", "a number"});
  json = default_json();
  json["rows"][0]["mode"] = 3;
  expect_mentions(parse_error(json.dump()), {"lut.json: rows[0].mode", "expected a string",
                                             "static-ratio, dynamic-threshold"});
  json = default_json();
  json["rows"][0]["prior"] = Json::array();
  expect_mentions(parse_error(json.dump()), {"lut.json: rows[0].prior", "expected an object"});
}

TEST(LutErrors, OutOfRangeNamesPathValueAndRange) {
  Json json = default_json();
  json["rows"][2]["prior"]["gamma"] = -1;
  EXPECT_EQ(parse_error(json.dump()), "lut.json: rows[2].prior.gamma = -1: allowed range (0, 16]");

  json = default_json();
  json["rows"][0]["prior"]["lambda"] = 100.5;
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[0].prior.lambda = 100.5", "allowed range [0.0625, 16]"});
  json = default_json();
  json["rows"][4]["prior"]["theta_m"] = 1;
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[4].prior.theta_m = 1", "allowed range [0, 1)"});
  json = default_json();
  json["rows"][5]["prior"]["theta_c"] = -0.25;
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[5].prior.theta_c = -0.25", "allowed range [0, 1)"});
  json = default_json();
  json["rows"][0]["selection"]["r_near"] = 1.5;
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[0].selection.r_near = 1.5", "allowed range [0, 1]"});
  json = default_json();
  json["rows"][1]["selection"]["tau_far"] = -0.1;
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[1].selection.tau_far = -0.1", "allowed range [0, 1]"});
}

TEST(LutErrors, UnknownRegimeOrMode) {
  Json json = default_json();
  json["rows"][1]["regime"] = "fast";
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[1].regime", "\"fast\"", "low, mid, high"});
  json = default_json();
  json["rows"][1]["mode"] = "static";
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[1].mode", "\"static\"", "static-ratio, dynamic-threshold"});
}

TEST(LutErrors, DuplicateRegimeAndMode) {
  Json json = default_json();
  json["rows"].push_back(json["rows"][2]);
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[6]", "duplicate", "mid", "static-ratio", "rows[2]"});
}

TEST(LutErrors, UnreadableFileNamesThePath) {
  const std::string path = "/nonexistent-dynamicrad-dir/lut.json";
  try {
    load_lut(path);
    FAIL() << "no throw";
  } catch (const Error& e) {
    expect_mentions(e.what(), {path.c_str(), "cannot open"});
  }
}

TEST(LutErrors, BadFileNamesThePath) {
  const fs::path dir = scratch_dir("badfile");
  const fs::path path = dir / "broken.json";
  std::ofstream(path) << "{\"format\": \"dynamicrad-lut\", \"version\": 1, \"rows\": [}";
  try {
    load_lut(path.string());
    FAIL() << "no throw";
  } catch (const Error& e) {
    expect_mentions(e.what(), {path.string().c_str(), "malformed JSON"});
  }
  fs::remove_all(dir);
}

TEST(LutErrors, SaveIntoMissingDirectoryThrowsAndLeavesNothing) {
  const fs::path dir = scratch_dir("savefail");
  const fs::path path = dir / "missing" / "table.json";
  try {
    save_lut(default_lut(), path.string());
    FAIL() << "no throw";
  } catch (const Error& e) {
    expect_mentions(e.what(), {path.string().c_str()});
    EXPECT_EQ(e.field(), path.string());  // the caller's path, never the temporary's
    EXPECT_EQ(std::string(e.what()).find("/.table.json"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_empty(dir));
  fs::remove_all(dir);
}


// A folder's entries other than `except`: a writer's leftover temporaries show up here.
std::vector<std::string> entries_except(const fs::path& dir, const std::vector<std::string>& except) {
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (std::find(except.begin(), except.end(), name) == except.end()) names.push_back(name);
  }
  return names;
}

TEST(LutSave, ASymbolicLinkIsFollowedAndStaysALink) {
  const fs::path dir = scratch_dir("symlink");
  { std::ofstream(dir / "real.json") << "old"; }
  fs::create_symlink("real.json", dir / "link.json");  // relative, as `ln -s` makes it
  save_lut(default_lut(), (dir / "link.json").string());
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(dir / "link.json")));
  EXPECT_EQ(read_text(dir / "real.json"), lut_to_json(default_lut()));
  // A dangling link: its target is created.
  fs::create_symlink("new.json", dir / "dangling.json");
  save_lut(default_lut(), (dir / "dangling.json").string());
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(dir / "dangling.json")));
  EXPECT_EQ(read_text(dir / "new.json"), lut_to_json(default_lut()));
  EXPECT_TRUE(entries_except(dir, {"real.json", "link.json", "new.json", "dangling.json"}).empty());
  fs::remove_all(dir);
}

TEST(LutSave, AFifoIsWrittenInPlaceAndStaysAFifo) {
  const fs::path dir = scratch_dir("fifo");
  const fs::path fifo = dir / "pipe.json";
  const std::string got =
      testing::read_fifo_while(fifo, [&] { save_lut(default_lut(), fifo.string()); });
  EXPECT_EQ(got, lut_to_json(default_lut()));
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_TRUE(entries_except(dir, {"pipe.json"}).empty());
  fs::remove_all(dir);
}

TEST(LutSave, AFileNamedLikeTheOldTemporaryIsLeftAlone) {
  const fs::path dir = scratch_dir("tmpname");
  { std::ofstream(dir / "notes.json.tmp") << "my notes"; }
  save_lut(default_lut(), (dir / "notes.json").string());
  EXPECT_EQ(read_text(dir / "notes.json.tmp"), "my notes");
  EXPECT_EQ(read_text(dir / "notes.json"), lut_to_json(default_lut()));
  EXPECT_TRUE(entries_except(dir, {"notes.json", "notes.json.tmp"}).empty());
  fs::remove_all(dir);
}

// A directory as the target: refused, and nothing is written beside it.
TEST(LutSave, ADirectoryTargetIsRefusedAndLeavesNoTemporary) {
  const fs::path dir = scratch_dir("failures");
  fs::create_directories(dir / "folder.json");
  try {
    save_lut(default_lut(), (dir / "folder.json").string());
    FAIL() << "no throw";
  } catch (const Error& e) {
    expect_mentions(e.what(), {"folder.json", "directory"});
  }
  EXPECT_TRUE(fs::is_directory(dir / "folder.json"));
  EXPECT_TRUE(entries_except(dir, {"folder.json"}).empty());
  fs::remove_all(dir);
}

TEST(LutErrors, ADirectoryIsNotReadAsJson) {
  const fs::path dir = scratch_dir("dirlut");
  try {
    load_lut(dir.string());
    FAIL() << "no throw";
  } catch (const Error& e) {
    expect_mentions(e.what(), {dir.string().c_str(), "is a directory"});
    EXPECT_EQ(std::string(e.what()).find("malformed"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(LutErrors, AWrongTypeSaysWhatIsExpectedOnceWithTheRange) {
  Json json = default_json();
  json["rows"][0]["prior"]["gamma"] = "1";
  EXPECT_EQ(parse_error(json.dump()),
            "lut.json: rows[0].prior.gamma: expected a number, got a string; allowed range (0, 16]");
  json = default_json();
  json["rows"][0]["selection"].erase("r_near");
  EXPECT_EQ(parse_error(json.dump()),
            "lut.json: rows[0].selection.r_near: missing; expected a number, allowed range [0, 1]");
}

// A write that fails part-way (the file-size limit) throws naming the path and removes its
// temporary; an existing file is left as it was.
TEST(LutSave, AFailedWriteRemovesItsTemporaryAndKeepsTheOldFile) {
  const fs::path dir = scratch_dir("efbig");
  { std::ofstream(dir / "table.json") << "old"; }
  struct rlimit old_limit {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  void (*old_handler)(int) = std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of a signal
  struct rlimit small = old_limit;
  small.rlim_cur = 64;  // far below the JSON's size
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string message;
  try {
    save_lut(default_lut(), (dir / "table.json").string());
  } catch (const Error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  expect_mentions(message, {"table.json", "cannot write"});
  EXPECT_EQ(read_text(dir / "table.json"), "old");
  EXPECT_TRUE(entries_except(dir, {"table.json"}).empty());
  fs::remove_all(dir);
}

TEST(LutErrors, ADuplicateOfTheRowJustBeforeIsFound) {
  Json json = default_json();
  Json rows = Json::array({json["rows"][0], json["rows"][1], json["rows"][1]});
  json["rows"] = rows;
  expect_mentions(parse_error(json.dump()),
                  {"lut.json: rows[2]", "duplicate", "low", "dynamic-threshold", "rows[1]"});
}

}  // namespace
}  // namespace dynamicrad
