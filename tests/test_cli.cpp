// The `dynamicrad` command, run as a program (DYNAMICRAD_CLI): help, exit codes (0 ok, 1 runtime
// error, 2 usage error), error messages naming the flag or file, and small end-to-end runs.
#include <gtest/gtest.h>

#include "cli_support.h"
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>

#include "dynamicrad/lut.h"
#include "writer_support.h"

namespace dynamicrad {
namespace {

namespace fs = std::filesystem;

using Result = testing::CliResult;
using testing::read_text;

class Cli : public testing::CliTest {};

void expect_mentions(const std::string& text, std::initializer_list<const char*> parts) {
  for (const char* part : parts) {
    EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' missing in:\n" << text;
  }
}

// A geometry that builds and runs in milliseconds.
const char* const kTiny = "--frames 2 --height 4 --width 8 --heads 2 --head-dim 16 --block 32";

TEST_F(Cli, TopLevelHelpAndVersion) {
  Result r = run("--help");
  EXPECT_EQ(r.code, 0);
  expect_mentions(r.out, {"usage: dynamicrad", "mask", "attend", "lut", "--version"});
  r = run("--version");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out.rfind("dynamicrad ", 0), 0u) << r.out;
}

TEST_F(Cli, NoCommandOrUnknownCommandIsAUsageError) {
  Result r = run("");
  EXPECT_EQ(r.code, 2);
  expect_mentions(r.err, {"usage: dynamicrad"});
  r = run("paint");
  EXPECT_EQ(r.code, 2);
  expect_mentions(r.err, {"dynamicrad: error:", "paint", "mask, attend, lut"});
}

TEST_F(Cli, CommandHelpMentionsEveryFlag) {
  const char* shared[] = {"--preset",
                          "--frames",
                          "--height",
                          "--width",
                          "--text-tokens",
                          "--text-placement",
                          "--heads",
                          "--head-dim",
                          "--block",
                          "--order",
                          "--regime",
                          "--mode",
                          "--lut",
                          "--gamma",
                          "--lambda",
                          "--theta-m",
                          "--theta-c",
                          "--dense-adjacent",
                          "--first-frame-sink",
                          "--r-near",
                          "--r-far",
                          "--tau-near",
                          "--tau-far",
                          "--seed",
                          "--help"};
  Result mask = run("mask --help");
  EXPECT_EQ(mask.code, 0);
  for (const char* flag : shared) expect_mentions(mask.out, {flag});
  expect_mentions(mask.out, {"--head ", "--png", "--cell-pixels", "--no-frame-grid",
                             "wan2.1-14b-720p", "hunyuan-720p"});

  Result attend = run("attend --help");
  EXPECT_EQ(attend.code, 0);
  for (const char* flag : shared) expect_mentions(attend.out, {flag});
  expect_mentions(attend.out, {"--threads", "--repeats", "--recall-max-tokens", "--reference-max-tokens"});

  Result lut = run("lut --help");
  EXPECT_EQ(lut.code, 0);
  expect_mentions(lut.out, {"--lut", "--out", "--help"});
}

TEST_F(Cli, UnknownFlagIsAUsageErrorNamingIt) {
  for (const char* command : {"mask", "attend", "lut"}) {
    const Result r = run(std::string(command) + " --bogus 3");
    EXPECT_EQ(r.code, 2) << command;
    expect_mentions(r.err, {"dynamicrad: error:", "--bogus"});
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST_F(Cli, BadValuesAreUsageErrorsNamingFlagAndAllowedValues) {
  struct Case {
    const char* args;
    const char* flag;
    const char* allowed;
  };
  const Case cases[] = {
      {"mask --block 48", "--block", "32, 64, 128"},
      {"mask --regime fast", "--regime", "low, mid, high"},
      {"mask --mode random", "--mode", "static-ratio, dynamic-threshold"},
      {"mask --preset sora", "--preset", "wan2.1-14b-480p"},
      {"mask --order zigzag", "--order", "raster, tiled3d"},
      {"mask --gamma -1", "--gamma", "(0, 16]"},
      {"mask --r-near 2", "--r-near", "[0, 1]"},
      {"mask --frames abc", "--frames", "integer"},
      {"mask --frames 0", "--frames", "[1, "},
      {"mask --text-placement suffix", "--text-tokens", "placement none"},
      {"mask --head 99", "--head", "[0, 11]"},
      {"mask --dense-adjacent yes", "--dense-adjacent", "true, false"},
      {"mask --tau-near 0.1", "--tau-near", "dynamic-threshold"},
      {"attend --threads -2", "--threads", "[0, 1024]"},
      {"attend --seed", "--seed", "needs a value"},
      {"mask --no-frame-grid=1", "--no-frame-grid", "takes no value"},
  };
  for (const Case& c : cases) {
    const Result r = run(c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.err;
    expect_mentions(r.err, {"dynamicrad: error:", c.flag, c.allowed});
  }
}

TEST_F(Cli, MaskWritesAPictureAndPrintsStatistics) {
  const Result r = run(std::string("mask ") + kTiny + " --png tiny.png --head 1 --no-frame-grid");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_mentions(r.out, {"sparsity", "prior density", "build_radial_prior", "pool_blocks",
                          "select_blocks", "layout bytes", "frame distance", "tiny.png"});
  const std::string png = read_text(dir_ / "tiny.png");
  ASSERT_GE(png.size(), 8u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
  EXPECT_TRUE(dr_test::temporaries(dir_).empty());
}

TEST_F(Cli, MaskWithPresetOverridesAndDynamicMode) {
  // A preset with its frame count cut down so that it runs fast.
  const Result r =
      run("mask --preset hunyuan-720p --frames 2 --height 8 --width 8 --heads 2 --regime high "
          "--tau-near 0.01 --png hy.png");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_mentions(r.out, {"hunyuan-720p", "dynamic-threshold", "text tokens", "tau_near 0.01"});
}

TEST_F(Cli, AttendPrintsErrorAgainstTheReference) {
  const Result r = run(std::string("attend ") + kTiny + " --repeats 1 --threads 1");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_mentions(
      r.out, {"sparsity", "relative L2 error", "attention-mass recall", "reference", "speedup"});
}

TEST_F(Cli, BadLutFileIsARuntimeErrorNamingTheFile) {
  {
    std::ofstream bad(dir_ / "bad.json");
    bad << "{\"format\": \"dynamicrad-lut\", \"version\": 7, \"rows\": []}";
  }
  Result r = run(std::string("mask ") + kTiny + " --lut bad.json");
  EXPECT_EQ(r.code, 1);
  expect_mentions(r.err, {"dynamicrad: error:", "bad.json", "version"});
  r = run("lut --lut missing.json");
  EXPECT_EQ(r.code, 1);
  expect_mentions(r.err, {"dynamicrad: error:", "missing.json"});
}

TEST_F(Cli, LutPrintsAndWritesTheBuiltInTable) {
  Result r = run("lut");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, lut_to_json(default_lut()));
  r = run("lut --out table.json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_text(dir_ / "table.json"), lut_to_json(default_lut()));
  r = run("lut --lut table.json");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(Cli, UnwritablePictureIsARuntimeError) {
  const Result r = run(std::string("mask ") + kTiny + " --png no/such/dir/m.png");
  EXPECT_EQ(r.code, 1);
  expect_mentions(r.err, {"dynamicrad: error:", "no/such/dir/m.png"});
}


std::size_t occurrences(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (std::size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

TEST_F(Cli, OutputsFollowLinksAndWriteOpenFilesInPlace) {
  // A picture through a symbolic link: the target is written, the link stays.
  fs::create_symlink("real.png", dir_ / "link.png");
  Result r = run(std::string("mask ") + kTiny + " --png link.png");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(dir_ / "link.png")));
  EXPECT_EQ(read_text(dir_ / "real.png").substr(1, 3), "PNG");
  // A link to the command's own stdout (as /dev/stdout is): the JSON continues stdout.
  fs::create_symlink("/proc/self/fd/1", dir_ / "out");
  r = run("lut --out out");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, lut_to_json(default_lut()) + "wrote 6 rows to out\n");
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(dir_ / "out")));
}

TEST_F(Cli, AnUnwritablePictureFailsBeforeTheMaskIsBuilt) {
  // Large enough (283 MB of Q/K/V) that the command announces the synthetic data before making it.
  const Result r = run("mask --frames 4 --height 48 --width 48 --heads 40 --head-dim 128 --block 128 "
                       "--png no/such/dir/m.png");
  EXPECT_EQ(r.code, 1);
  expect_mentions(r.err, {"dynamicrad: error:", "no/such/dir/m.png"});
  EXPECT_EQ(r.err.find("making synthetic"), std::string::npos) << r.err;
  const Result folder = run(std::string("mask ") + kTiny + " --png .");
  EXPECT_EQ(folder.code, 1);
  expect_mentions(folder.err, {"is a directory"});
}

TEST_F(Cli, AMissingLutRowNamesTheFileAndLutListsMissingRows) {
  Lut lut = default_lut();
  lut.entries.erase(std::remove_if(lut.entries.begin(), lut.entries.end(),
                                   [](const LutEntry& e) { return e.regime == MotionRegime::high; }),
                    lut.entries.end());
  save_lut(lut, (dir_ / "missingrow.json").string());
  Result r = run(std::string("attend ") + kTiny + " --lut missingrow.json --regime high");
  EXPECT_EQ(r.code, 1);
  expect_mentions(r.err, {"missingrow.json: no row for regime high and mode dynamic-threshold"});
  // Checking the file: valid, so exit 0, with the missing rows on stderr.
  r = run("lut --lut missingrow.json");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, lut_to_json(lut));
  expect_mentions(r.err, {"warning", "missingrow.json", "high / static-ratio",
                          "high / dynamic-threshold (the regime's default mode)"});
  EXPECT_EQ(occurrences(r.err, "no row for"), 2u) << r.err;
  r = run("lut");  // the built-in table has every row
  EXPECT_TRUE(r.err.empty()) << r.err;
}

TEST_F(Cli, RangeErrorsGiveEachFlagsOwnRangeInOneFormat) {
  struct Case {
    const char* args;
    const char* expected;
  };
  const Case cases[] = {
      {"attend --r-near nan", "--r-near = nan: allowed range [0, 1]"},
      {"attend --r-near abc", "--r-near = 'abc': expected a number, allowed range [0, 1]"},
      {"attend --gamma nan", "--gamma = nan: allowed range (0, 16]"},
      {"attend --lambda inf", "--lambda = inf: allowed range [0.0625, 16]"},
      {"attend --head-dim 0", "--head-dim = 0: allowed range [1, 512]"},
      {"attend --head-dim 100000", "--head-dim = 100000: allowed range [1, 512]"},
      {"attend --frames 0", "--frames = 0: allowed range [1, 2147483647]; frames * height * width + "
                            "text_tokens must be < 2^31"},
      {"attend --frames 2147483647 --height 2 --width 1",
       "--frames, --height, --width, --text-tokens: frames * height * width + text_tokens = "
       "4294967294: must be < 2^31"},
  };
  for (const Case& c : cases) {
    const Result r = run(c.args);
    EXPECT_EQ(r.code, 2) << c.args;
    expect_mentions(r.err, {c.expected});
    EXPECT_EQ(r.err.find("e+308"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("2147483648"), std::string::npos) << r.err;
  }
}

TEST_F(Cli, ALutPathThatIsADirectoryIsNamedAsOne) {
  fs::create_directories(dir_ / "tables");
  for (const char* args : {"lut --lut tables", "mask --lut tables"}) {
    const Result r = run(args);
    EXPECT_EQ(r.code, 1) << args;
    expect_mentions(r.err, {"tables: is a directory"});
    EXPECT_EQ(r.err.find("malformed"), std::string::npos) << r.err;
  }
}

TEST_F(Cli, APositionalArgumentPointsToHelpOnce) {
  const Result r = run("attend positional");
  EXPECT_EQ(r.code, 2);
  expect_mentions(r.err, {"unexpected argument 'positional'", "(see dynamicrad attend --help)"});
  EXPECT_EQ(occurrences(r.err, "--help"), 1u) << r.err;
}

// A full-size preset would run the double-precision dense reference for hours: refused before any
// work (no Q/K/V made, nothing on stdout), unless the limit is raised.
TEST_F(Cli, AttendRefusesAReferenceTooLargeToFinish) {
  const Result r = run("attend --preset wan2.1-14b-720p");
  EXPECT_EQ(r.code, 2);
  expect_mentions(r.err, {"--reference-max-tokens = 16384", "75600 tokens", "dynamicrad mask"});
  EXPECT_TRUE(r.out.empty()) << r.out;
  const Result small = run(std::string("attend ") + kTiny + " --repeats 1 --threads 1 --reference-max-tokens 50");
  EXPECT_EQ(small.code, 2);
  expect_mentions(small.err, {"--reference-max-tokens = 50", "64 tokens"});
}

TEST_F(Cli, AnUnknownTopLevelOptionIsCalledAnOption) {
  const Result r = run("--verbose");
  EXPECT_EQ(r.code, 2);
  expect_mentions(r.err, {"unknown option '--verbose'", "--help, --version"});
  EXPECT_EQ(r.err.find("unknown command"), std::string::npos) << r.err;
}

TEST_F(Cli, ABareDoubleDashIsAnUnexpectedArgument) {
  const Result r = run("lut --");
  EXPECT_EQ(r.code, 2);
  expect_mentions(r.err, {"dynamicrad: error:", "unexpected argument '--'"});
}

TEST_F(Cli, FirstFrameSinkAndDenseAdjacentOverrideTheirOwnFields) {
  const Result r = run(std::string("mask ") + kTiny +
                       " --png p.png --first-frame-sink false --dense-adjacent true");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_mentions(r.out, {"first_frame_sink off, dense_adjacent on"});
}

}  // namespace
}  // namespace dynamicrad
