#include "engine_flags.h"

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "dynamicrad/error.h"
#include "dynamicrad/presets.h"

namespace dynamicrad::cli {
namespace {

// Sizes must keep frames * height * width + text_tokens below 2^31 (geometry.h), so no single size
// may exceed 2^31 - 1.
constexpr std::int64_t kMaxSize = std::numeric_limits<std::int32_t>::max();
constexpr const char* kTokenRule = "; frames * height * width + text_tokens must be < 2^31";
// geometry.head_dim's range (geometry.h).
constexpr std::int64_t kMaxHeadDim = 512;

// The flag that sets each validated geometry field.
struct GeometryField {
  const char* field;
  const char* flag;
};
constexpr GeometryField kGeometryFields[] = {
    {"geometry.frames", "frames"},
    {"geometry.height", "height"},
    {"geometry.width", "width"},
    {"geometry.text_tokens", "text-tokens"},
    {"geometry.text_placement", "text-placement"},
    {"geometry.heads", "heads"},
    {"geometry.head_dim", "head-dim"},
    {"geometry.block_size", "block"},
    {"geometry.order", "order"},
    {"geometry.tile", "order"},
};

// What a library error says after its "field: " prefix.
std::string problem_of(const Error& e) {
  const std::string text = e.what();
  const std::size_t prefix = e.field().size() + 2;
  return text.size() > prefix ? text.substr(prefix) : text;
}

// The "allowed ..." part of a library validation message, or its whole problem text.
std::string allowed_of(const Error& e) {
  const std::string text = e.what();
  const std::size_t at = text.find("allowed");
  return at != std::string::npos ? text.substr(at) : problem_of(e);
}

// A LUT override: a number as strtod reads it, validated in a default-constructed params struct with
// only this field set, so that a failure names the flag and the field's own range
// ("--r-near = 2: allowed range [0, 1]"). Text that is no number is checked as NaN, which no range
// holds, to state the same range.
template <typename Params>
double override_number(const FlagSet& flags, const std::string& flag, double Params::*field) {
  const std::string text = flags.text(flag);
  char* end = nullptr;
  const double parsed = std::strtod(text.c_str(), &end);
  const bool numeric = !text.empty() && *end == '\0';
  Params single;
  single.*field = numeric ? parsed : std::numeric_limits<double>::quiet_NaN();
  try {
    validate(single);
  } catch (const Error& e) {
    const std::string shown = numeric ? text + ":" : "'" + text + "': expected a number,";
    throw UsageError("--" + flag + " = " + shown + " " + allowed_of(e));
  }
  return parsed;
}

}  // namespace

std::vector<FlagSpec> geometry_flags(const VideoGeometry& d) {
  const std::string preset_help = "named model geometry; explicit size flags override its fields";
  return {
      {"preset", "NAME", preset_help, "", preset_names()},
      {"frames", "N", "latent frames", std::to_string(d.frames), {}},
      {"height", "N", "latent tokens per frame column", std::to_string(d.height), {}},
      {"width", "N", "latent tokens per frame row", std::to_string(d.width), {}},
      {"text-tokens", "N", "text tokens of joint attention", std::to_string(d.text_tokens), {}},
      {"text-placement",
       "WHERE",
       "where the text tokens sit [default: prefix when --text-tokens > 0]",
       "",
       {"none", "prefix", "suffix"}},
      {"heads", "N", "attention heads", std::to_string(d.heads), {}},
      {"head-dim", "N", "head dimension", std::to_string(d.head_dim), {}},
      {"block", "N", "block size", std::to_string(d.block_size), {"32", "64", "128"}},
      {"order",
       "ORDER",
       "token order inside the sequence",
       to_string(d.order),
       {"raster", "tiled3d"}},
  };
}

VideoGeometry geometry_from_flags(const FlagSet& flags, std::string* label) {
  VideoGeometry g;
  const bool preset = flags.given("preset");
  if (preset) {
    g = preset_geometry(flags.text("preset"));
    *label = flags.text("preset");
  } else {
    *label = "custom";
  }
  // `rule`: a limit the size shares with others, added to a range error.
  auto size = [&](const char* flag, std::int64_t min, std::int64_t max, const char* rule,
                  std::int64_t* field) {
    if (preset && !flags.given(flag)) return;
    try {
      *field = flags.integer(flag, min, max);
    } catch (const UsageError& e) {
      throw UsageError(e.what() + std::string(rule));
    }
  };
  size("frames", 1, kMaxSize, kTokenRule, &g.frames);
  size("height", 1, kMaxSize, kTokenRule, &g.height);
  size("width", 1, kMaxSize, kTokenRule, &g.width);
  size("text-tokens", 0, kMaxSize, kTokenRule, &g.text_tokens);
  size("heads", 1, kMaxSize, "", &g.heads);
  size("head-dim", 1, kMaxHeadDim, "", &g.head_dim);
  if (!preset || flags.given("block"))
    g.block_size = static_cast<int>(flags.integer("block", 32, 128));
  if (!preset || flags.given("order")) g.order = parse_token_order(flags.text("order"));
  if (flags.given("text-placement")) {
    g.text_placement = parse_text_placement(flags.text("text-placement"));
  } else if (!preset || flags.given("text-tokens")) {
    g.text_placement = g.text_tokens > 0 ? TextPlacement::prefix : TextPlacement::none;
  }
  try {
    validate(g);
  } catch (const Error& e) {
    for (const GeometryField& f : kGeometryFields) {
      if (e.field() == f.field) throw UsageError(std::string("--") + f.flag + ": " + problem_of(e));
    }
    if (e.field() == "geometry") {  // the token count, a rule over several flags
      throw UsageError("--frames, --height, --width, --text-tokens: " + problem_of(e));
    }
    throw UsageError(e.what());
  }
  return g;
}

std::vector<FlagSpec> lut_flags() {
  const std::string lut_default = "overrides the LUT row";
  return {
      {"regime",
       "REGIME",
       "motion regime: picks the LUT row and the synthetic drift",
       "mid",
       {"low", "mid", "high"}},
      {"mode",
       "MODE",
       "selection mode [default: static-ratio for low and mid, dynamic-threshold for high]",
       "",
       {"static-ratio", "dynamic-threshold"}},
      {"lut", "FILE", "LUT JSON file [default: the built-in table]", "", {}},
      {"gamma", "X", "radial prior decay factor; " + lut_default, "", {}},
      {"lambda", "X", "radial prior long factor; " + lut_default, "", {}},
      {"theta-m", "X", "share of high-density columns a candidate needs; " + lut_default, "", {}},
      {"theta-c", "X", "column density that counts as high; " + lut_default, "", {}},
      {"dense-adjacent",
       "BOOL",
       "frame distance 1 always dense; " + lut_default,
       "",
       {"true", "false"}},
      {"first-frame-sink",
       "BOOL",
       "keys of frame 0 always dense; " + lut_default,
       "",
       {"true", "false"}},
      {"r-near", "X", "static-ratio: share of near candidates kept; " + lut_default, "", {}},
      {"r-far", "X", "static-ratio: share of far candidates kept; " + lut_default, "", {}},
      {"tau-near", "X", "dynamic-threshold: mass a near candidate needs; " + lut_default, "", {}},
      {"tau-far", "X", "dynamic-threshold: mass a far candidate needs; " + lut_default, "", {}},
  };
}

LutChoice lut_choice_from_flags(const FlagSet& flags) {
  LutChoice choice;
  choice.regime = parse_motion_regime(flags.text("regime"), "--regime");
  const SelectionMode mode = flags.given("mode")
                                 ? parse_selection_mode(flags.text("mode"), "--mode")
                                 : default_mode(choice.regime);
  const bool from_file = flags.given("lut");
  choice.lut_source = from_file ? flags.text("lut") : "built-in";
  const Lut lut = from_file ? load_lut(flags.text("lut")) : default_lut();
  try {
    choice.entry = lut.find(choice.regime, mode);
  } catch (const Error& e) {
    throw Error(choice.lut_source, problem_of(e));  // which table lacks the row
  }

  RadialPriorParams& prior = choice.entry.prior;
  auto prior_number = [&](const char* flag, double RadialPriorParams::*field) {
    if (!flags.given(flag)) return;
    prior.*field = override_number(flags, flag, field);
  };
  prior_number("gamma", &RadialPriorParams::gamma);
  prior_number("lambda", &RadialPriorParams::lambda);
  prior_number("theta-m", &RadialPriorParams::theta_m);
  prior_number("theta-c", &RadialPriorParams::theta_c);
  if (flags.given("dense-adjacent")) prior.dense_adjacent = flags.boolean("dense-adjacent");
  if (flags.given("first-frame-sink")) prior.first_frame_sink = flags.boolean("first-frame-sink");

  SelectionParams& selection = choice.entry.selection;
  auto selection_number = [&](const char* flag, double SelectionParams::*field,
                              SelectionMode for_mode) {
    if (!flags.given(flag)) return;
    if (mode != for_mode) {
      throw UsageError(std::string("--") + flag + " applies to mode " + to_string(for_mode) +
                       " only; the mode is " + to_string(mode));
    }
    selection.*field = override_number(flags, flag, field);
  };
  selection_number("r-near", &SelectionParams::r_near, SelectionMode::static_ratio);
  selection_number("r-far", &SelectionParams::r_far, SelectionMode::static_ratio);
  selection_number("tau-near", &SelectionParams::tau_near, SelectionMode::dynamic_threshold);
  selection_number("tau-far", &SelectionParams::tau_far, SelectionMode::dynamic_threshold);
  validate(prior);
  validate(selection);
  return choice;
}

std::string describe(const RadialPriorParams& p) {
  std::ostringstream out;
  out << "gamma " << p.gamma << ", lambda " << p.lambda << ", theta_m " << p.theta_m << ", theta_c "
      << p.theta_c << ", first_frame_sink " << (p.first_frame_sink ? "on" : "off")
      << ", dense_adjacent " << (p.dense_adjacent ? "on" : "off");
  return out.str();
}

std::string describe(const SelectionParams& s) {
  std::ostringstream out;
  if (s.mode == SelectionMode::static_ratio) {
    out << "r_near " << s.r_near << ", r_far " << s.r_far;
  } else {
    out << "tau_near " << s.tau_near << ", tau_far " << s.tau_far;
  }
  return out.str();
}

std::string describe(const VideoGeometry& g) {
  std::ostringstream out;
  out << g.frames << " frames x " << g.height << " x " << g.width << " tokens";
  if (g.text_tokens > 0) {
    out << " + " << g.text_tokens << " text tokens (" << to_string(g.text_placement) << ")";
  }
  out << ", " << g.heads << " heads x " << g.head_dim << ", block " << g.block_size << ", "
      << to_string(g.order);
  if (g.batch != 1) out << ", batch " << g.batch;
  return out.str();
}

}  // namespace dynamicrad::cli
