// The LUT in memory and as JSON (lut.h): the built-in table, parsing with strict validation, and
// atomic saving.
//
// Error messages name where the bad value came from, the JSON path and what is allowed:
//   "lut.json: rows[2].prior.gamma = -1: allowed range (0, 16]"
// Ranges come from the library's own validate() functions, so the JSON reader never disagrees with
// the engine about what is valid.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "dynamicrad/error.h"
#include "dynamicrad/lut.h"
#include "dynamicrad/presets.h"
#include "io/atomic_file.h"

namespace dynamicrad {
namespace {

using Json = nlohmann::json;
// Writing keeps the documented key order ("format", "version", "rows"; regime before mode).
using OrderedJson = nlohmann::ordered_json;

constexpr const char* kFormat = "dynamicrad-lut";
constexpr int kVersion = 1;

const char* const kPriorFields[] = {"gamma",   "lambda",         "theta_m",
                                    "theta_c", "dense_adjacent", "first_frame_sink"};
const char* const kStaticRatioFields[] = {"r_near", "r_far"};
const char* const kDynamicThresholdFields[] = {"tau_near", "tau_far"};

// A JSON value as written in a message; invalid UTF-8 in strings is replaced, never thrown on.
std::string show(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string type_name(const Json& value) {
  if (value.is_number()) return "a number";
  if (value.is_boolean()) return "a boolean";
  if (value.is_string()) return "a string";
  if (value.is_array()) return "an array";
  if (value.is_object()) return "an object";
  return "null";
}

template <std::size_t N>
std::string join(const char* const (&names)[N]) {
  std::string out;
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) out += ", ";
    out += names[i];
  }
  return out;
}

// The part of a library validation message that states what is allowed ("allowed range (0, 16]"),
// or the whole problem text when it has no such part.
std::string allowed_part(const Error& error) {
  const std::string text = error.what();
  const std::size_t at = text.find("allowed");
  if (at != std::string::npos) return text.substr(at);
  const std::size_t prefix = error.field().size() + 2;  // "field: "
  return text.size() > prefix ? text.substr(prefix) : text;
}

// Reads one JSON object, addressing each value by its path for error messages, and rejects fields
// that nobody asked for once the caller is done.
class ObjectReader {
 public:
  ObjectReader(const Json& object, std::string source, std::string path)
      : object_(object), source_(std::move(source)), path_(std::move(path)) {
    if (!object_.is_object()) {
      throw Error(where(path_), "expected an object, got " + type_name(object_));
    }
  }

  const Json& require(const std::string& key, const std::string& allowed) {
    const auto it = object_.find(key);
    if (it == object_.end()) throw Error(where(child(key)), "missing; " + allowed);
    seen_.push_back(key);
    return *it;
  }

  // `range`: what the number may be ("allowed range (0, 16]").
  double number(const std::string& key, const std::string& range) {
    const Json& value = require(key, "expected a number, " + range);
    if (!value.is_number()) {
      throw Error(where(child(key)), "expected a number, got " + type_name(value) + "; " + range);
    }
    return value.get<double>();
  }

  bool boolean(const std::string& key) {
    const Json& value = require(key, "expected true or false");
    if (!value.is_boolean()) {
      throw Error(where(child(key)), "expected true or false, got " + type_name(value));
    }
    return value.get<bool>();
  }

  std::string string(const std::string& key, const std::string& allowed) {
    const Json& value = require(key, allowed);
    if (!value.is_string()) {
      throw Error(where(child(key)), "expected a string, got " + type_name(value) + "; " + allowed);
    }
    return value.get<std::string>();
  }

  // Throws on the first field that was not read. `allowed` lists the fields that may appear.
  void reject_unknown(const std::string& allowed) const {
    for (auto it = object_.begin(); it != object_.end(); ++it) {
      bool known = false;
      for (const std::string& key : seen_) known = known || key == it.key();
      if (!known) {
        throw Error(where(child(it.key())), "unknown field; allowed fields are " + allowed);
      }
    }
  }

  // "<source>: <path>" (just the source at the top level).
  std::string where(const std::string& path) const {
    return path.empty() ? source_ : source_ + ": " + path;
  }
  std::string child(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }
  const Json& value(const std::string& key) const { return object_.at(key); }

 private:
  const Json& object_;
  std::string source_;
  std::string path_;
  std::vector<std::string> seen_;
};

// The allowed range of one field, as its validate() states it ("allowed range (0, 16]"): the answer
// to NaN, which no range holds.
template <typename Params>
std::string range_of(double Params::*field) {
  Params params;
  params.*field = std::numeric_limits<double>::quiet_NaN();
  try {
    validate(params);
  } catch (const Error& e) {
    return allowed_part(e);
  }
  return "any number";
}

// Checks one field by validating an otherwise default struct with that field set, so that a failure
// is attributed to the JSON key that caused it.
template <typename Params, typename Setter>
void check_field(ObjectReader& reader, const std::string& key, Setter set) {
  Params params;
  set(params);
  try {
    validate(params);
  } catch (const Error& e) {
    throw Error(reader.where(reader.child(key)) + " = " + show(reader.value(key)), allowed_part(e));
  }
}

RadialPriorParams read_prior(const Json& json, const std::string& source, const std::string& path) {
  ObjectReader reader(json, source, path);
  RadialPriorParams p;
  p.gamma = reader.number("gamma", range_of(&RadialPriorParams::gamma));
  check_field<RadialPriorParams>(reader, "gamma", [&](RadialPriorParams& q) { q.gamma = p.gamma; });
  p.lambda = reader.number("lambda", range_of(&RadialPriorParams::lambda));
  check_field<RadialPriorParams>(reader, "lambda",
                                 [&](RadialPriorParams& q) { q.lambda = p.lambda; });
  p.theta_m = reader.number("theta_m", range_of(&RadialPriorParams::theta_m));
  check_field<RadialPriorParams>(reader, "theta_m",
                                 [&](RadialPriorParams& q) { q.theta_m = p.theta_m; });
  p.theta_c = reader.number("theta_c", range_of(&RadialPriorParams::theta_c));
  check_field<RadialPriorParams>(reader, "theta_c",
                                 [&](RadialPriorParams& q) { q.theta_c = p.theta_c; });
  p.dense_adjacent = reader.boolean("dense_adjacent");
  p.first_frame_sink = reader.boolean("first_frame_sink");
  reader.reject_unknown(join(kPriorFields));
  try {
    validate(p);  // any rule that spans several fields
  } catch (const Error& e) {
    throw Error(reader.where(path), e.what());
  }
  return p;
}

SelectionParams read_selection(const Json& json, SelectionMode mode, const std::string& source,
                               const std::string& path) {
  ObjectReader reader(json, source, path);
  SelectionParams s;
  s.mode = mode;
  if (mode == SelectionMode::static_ratio) {
    s.r_near = reader.number("r_near", range_of(&SelectionParams::r_near));
    check_field<SelectionParams>(reader, "r_near",
                                 [&](SelectionParams& q) { q.r_near = s.r_near; });
    s.r_far = reader.number("r_far", range_of(&SelectionParams::r_far));
    check_field<SelectionParams>(reader, "r_far", [&](SelectionParams& q) { q.r_far = s.r_far; });
    reader.reject_unknown(join(kStaticRatioFields) + " (mode static-ratio)");
  } else {
    s.tau_near = reader.number("tau_near", range_of(&SelectionParams::tau_near));
    check_field<SelectionParams>(reader, "tau_near",
                                 [&](SelectionParams& q) { q.tau_near = s.tau_near; });
    s.tau_far = reader.number("tau_far", range_of(&SelectionParams::tau_far));
    check_field<SelectionParams>(reader, "tau_far",
                                 [&](SelectionParams& q) { q.tau_far = s.tau_far; });
    reader.reject_unknown(join(kDynamicThresholdFields) + " (mode dynamic-threshold)");
  }
  try {
    validate(s);
  } catch (const Error& e) {
    throw Error(reader.where(path), e.what());
  }
  return s;
}

LutEntry read_row(const Json& json, const std::string& source, const std::string& path) {
  ObjectReader reader(json, source, path);
  LutEntry entry;
  const std::string regime_text = reader.string("regime", "allowed values are low, mid, high");
  entry.regime = parse_motion_regime(regime_text, reader.where(reader.child("regime")));
  const std::string mode_text =
      reader.string("mode", "allowed values are static-ratio, dynamic-threshold");
  const SelectionMode mode = parse_selection_mode(mode_text, reader.where(reader.child("mode")));
  entry.prior = read_prior(reader.require("prior", "expected an object with " + join(kPriorFields)),
                           source, reader.child("prior"));
  const std::string selection_fields = mode == SelectionMode::static_ratio
                                           ? join(kStaticRatioFields)
                                           : join(kDynamicThresholdFields);
  entry.selection =
      read_selection(reader.require("selection", "expected an object with " + selection_fields),
                     mode, source, reader.child("selection"));
  reader.reject_unknown("regime, mode, prior, selection");
  return entry;
}

// The parser's own message without its "[json.exception.parse_error.101] " tag; a syntax error
// gives the line and column, a number overflow names the number.
std::string parse_problem(const nlohmann::json::exception& e) {
  std::string text = e.what();
  const std::size_t tag_end = text.find("] ");
  if (text.rfind("[json.exception.", 0) == 0 && tag_end != std::string::npos) {
    text = text.substr(tag_end + 2);
  }
  return "malformed JSON: " + text;
}

OrderedJson entry_to_json(const LutEntry& e) {
  OrderedJson row;
  row["regime"] = to_string(e.regime);
  row["mode"] = to_string(e.selection.mode);
  OrderedJson& prior = row["prior"];
  prior["gamma"] = e.prior.gamma;
  prior["lambda"] = e.prior.lambda;
  prior["theta_m"] = e.prior.theta_m;
  prior["theta_c"] = e.prior.theta_c;
  prior["dense_adjacent"] = e.prior.dense_adjacent;
  prior["first_frame_sink"] = e.prior.first_frame_sink;
  OrderedJson& selection = row["selection"];
  if (e.selection.mode == SelectionMode::static_ratio) {
    selection["r_near"] = e.selection.r_near;
    selection["r_far"] = e.selection.r_far;
  } else {
    selection["tau_near"] = e.selection.tau_near;
    selection["tau_far"] = e.selection.tau_far;
  }
  return row;
}

LutEntry make_entry(MotionRegime regime, SelectionMode mode, const RadialPriorParams& prior,
                    double near, double far) {
  LutEntry e;
  e.regime = regime;
  e.prior = prior;
  e.selection.mode = mode;
  if (mode == SelectionMode::static_ratio) {
    e.selection.r_near = near;
    e.selection.r_far = far;
  } else {
    e.selection.tau_near = near;
    e.selection.tau_far = far;
  }
  return e;
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

const LutEntry& Lut::find(MotionRegime regime, SelectionMode mode) const {
  for (const LutEntry& e : entries) {
    if (e.regime == regime && e.selection.mode == mode) return e;
  }
  throw Error("lut", "no row for regime " + to_string(regime) + " and mode " + to_string(mode) +
                         " (the table has " + std::to_string(entries.size()) + " rows)");
}

SelectionMode default_mode(MotionRegime regime) {
  return regime == MotionRegime::high ? SelectionMode::dynamic_threshold
                                      : SelectionMode::static_ratio;
}

// The table the offline tuner produces (README, issue 4):
//   dynamicrad tune --device cpu --frames 21 --seed 1 --lut-geometry wan2.1-14b-720p --random-baseline 0
// Bayesian optimisation, 30 trials per cell, on the physics proxy at 21 latent frames (Wan2.1's 81
// video frames) of 12 x 16 tokens, 4 heads of 64, block 32, target sparsity 0.80; the
// dynamic-threshold taus are converted from the tuned relative taus for Wan2.1-14B 720p
// (tune_space.h). Mirror of data/lut/default.json.
Lut default_lut() {
  auto prior = [](double gamma, double lambda, double theta_m, double theta_c, bool dense_adjacent) {
    RadialPriorParams p;
    p.gamma = gamma;
    p.lambda = lambda;
    p.theta_m = theta_m;
    p.theta_c = theta_c;
    p.dense_adjacent = dense_adjacent;
    p.first_frame_sink = true;
    return p;
  };
  const SelectionMode sr = SelectionMode::static_ratio;
  const SelectionMode dt = SelectionMode::dynamic_threshold;
  Lut lut;
  lut.entries = {
      make_entry(MotionRegime::low, sr,
                 prior(0.26667958826843635, 1.2317506351134315, 0.32611656894053914, 0.9, true),
                 0.7694996188150615, 0.28901823196654586),
      make_entry(MotionRegime::low, dt,
                 prior(0.4077734049892926, 1.5185355415819364, 0.7124841837856684, 0.9, true),
                 0.002849508171613596, 0.014176292640727516),
      make_entry(MotionRegime::mid, sr,
                 prior(0.6140924971194844, 3.805002863897143, 0.6497180634011772, 0.0, true),
                 0.02, 0.017740058360856056),
      make_entry(MotionRegime::mid, dt,
                 prior(3.999999999999999, 2.6092463921853173, 0.023559835558956712, 0.10887950410832614, false),
                 0.0034284616876942243, 0.006559389140906217),
      make_entry(MotionRegime::high, sr,
                 prior(1.8292116084957077, 0.8914603532604986, 0.0, 0.855, false),
                 0.2657157414348634, 0.05),
      make_entry(MotionRegime::high, dt,
                 prior(3.999999999999999, 4.0, 0.5984146790755815, 0.5983876524447628, false),
                 0.0033042089335040942, 7.936091100344106e-05),
  };
  lut.calibrated_for = "wan2.1-14b-720p";
  return lut;
}

Lut parse_lut(const std::string& json_text, const std::string& source) {
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {  // syntax errors and number overflow
    throw Error(source, parse_problem(e));
  }
  ObjectReader reader(root, source, "");
  const std::string format_allowed = std::string("allowed value is \"") + kFormat + "\"";
  const std::string format = reader.string("format", format_allowed);
  if (format != kFormat) {
    throw Error(source + ": format = " + show(Json(format)), format_allowed);
  }
  const Json& version = reader.require("version", "allowed value is 1");
  if (!version.is_number_integer() || version.get<std::int64_t>() != kVersion) {
    throw Error(source + ": version = " + show(version), "allowed value is 1");
  }
  const Json& rows = reader.require("rows", "expected an array of rows");
  if (!rows.is_array()) {
    throw Error(source + ": rows", "expected an array of rows, got " + type_name(rows));
  }
  if (rows.empty()) throw Error(source + ": rows", "empty; at least one row is required");
  Lut lut;
  if (root.contains("calibrated_for")) {
    lut.calibrated_for = reader.string("calibrated_for", "expected a preset name");
    const std::vector<std::string> names = preset_names();
    if (std::find(names.begin(), names.end(), lut.calibrated_for) == names.end()) {
      std::string allowed;
      for (const std::string& n : names) allowed += (allowed.empty() ? "" : ", ") + n;
      throw Error(source + ": calibrated_for = " + show(Json(lut.calibrated_for)),
                  "unknown preset; allowed values are " + allowed);
    }
  }
  reader.reject_unknown("format, version, calibrated_for, rows");

  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::string path = "rows[" + std::to_string(i) + "]";
    LutEntry entry = read_row(rows[i], source, path);
    for (std::size_t j = 0; j < lut.entries.size(); ++j) {
      const LutEntry& other = lut.entries[j];
      if (other.regime == entry.regime && other.selection.mode == entry.selection.mode) {
        throw Error(source + ": " + path, "duplicate row for regime " + to_string(entry.regime) +
                                              " and mode " + to_string(entry.selection.mode) +
                                              " (first in rows[" + std::to_string(j) +
                                              "]); each (regime, mode) pair may appear once");
      }
    }
    lut.entries.push_back(entry);
  }
  return lut;
}

Lut load_lut(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw FileError(path, "is a directory; expected a LUT JSON file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path, "cannot open for reading: " + errno_text());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw FileError(path, "cannot read: " + errno_text());
  return parse_lut(text.str(), path);
}

std::string lut_to_json(const Lut& lut) {
  OrderedJson root;
  root["format"] = kFormat;
  root["version"] = kVersion;
  if (!lut.calibrated_for.empty()) root["calibrated_for"] = lut.calibrated_for;
  OrderedJson& rows = root["rows"];
  rows = OrderedJson::array();
  for (const LutEntry& e : lut.entries) rows.push_back(entry_to_json(e));
  return root.dump(2) + "\n";
}

void save_lut(const Lut& lut, const std::string& path) {
  detail::write_text_file(path, lut_to_json(lut));
}

}  // namespace dynamicrad
