// The tuner's search spaces and the transferable parameter form (tune_space.h).
#include "dynamicrad/tune_space.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "dynamicrad/error.h"
#include "core/number_text.h"

namespace dynamicrad {
namespace {

// A search parameter: its default box and the range any box must stay inside (the engine's
// validation range, or for the relative taus a generous one).
struct ParameterRule {
  const char* name;
  double lo, hi;              // default bounds
  double allowed_lo, allowed_hi;
  bool lo_open;               // allowed_lo itself is excluded
  ParameterScale scale;
  ParameterKind kind;
  const char* allowed_text;
};

constexpr ParameterRule kRules[] = {
    {"gamma", 0.125, 4.0, 0.0, 16.0, true, ParameterScale::log, ParameterKind::continuous, "(0, 16]"},
    {"lambda", 0.25, 4.0, 0.0625, 16.0, false, ParameterScale::log, ParameterKind::continuous,
     "[0.0625, 16]"},
    {"theta_m", 0.0, 0.9, 0.0, 0.99, false, ParameterScale::linear, ParameterKind::continuous, "[0, 0.99]"},
    {"theta_c", 0.0, 0.9, 0.0, 0.99, false, ParameterScale::linear, ParameterKind::continuous, "[0, 0.99]"},
    {"dense_adjacent", 0.0, 1.0, 0.0, 1.0, false, ParameterScale::linear, ParameterKind::boolean,
     "a boolean: bounds do not apply"},
    {"r_near", 0.02, 1.0, 0.0, 1.0, false, ParameterScale::linear, ParameterKind::continuous, "[0, 1]"},
    {"r_far", 0.0, 1.0, 0.0, 1.0, false, ParameterScale::linear, ParameterKind::continuous, "[0, 1]"},
    {"tau_near_rel", 0.02, 20.0, 1e-4, 1e4, false, ParameterScale::log, ParameterKind::continuous,
     "[0.0001, 10000]"},
    {"tau_far_rel", 0.02, 20.0, 1e-4, 1e4, false, ParameterScale::log, ParameterKind::continuous,
     "[0.0001, 10000]"},
};

const ParameterRule* find_rule(const std::string& name) {
  for (const ParameterRule& r : kRules) {
    if (name == r.name) return &r;
  }
  return nullptr;
}

std::vector<std::string> names_of(TuneMode mode) {
  std::vector<std::string> names = {"gamma", "lambda", "theta_m", "theta_c", "dense_adjacent"};
  if (mode == TuneMode::static_ratio) {
    names.insert(names.end(), {"r_near", "r_far"});
  } else if (mode == TuneMode::dynamic_threshold) {
    names.insert(names.end(), {"tau_near_rel", "tau_far_rel"});
  }
  return names;
}

}  // namespace

std::string to_string(TuneMode mode) {
  switch (mode) {
    case TuneMode::static_ratio:
      return "static-ratio";
    case TuneMode::dynamic_threshold:
      return "dynamic-threshold";
    case TuneMode::radial_prior:
      return "radial-prior";
  }
  return "static-ratio";
}

TuneMode parse_tune_mode(const std::string& text, const std::string& field) {
  if (text == "static-ratio") return TuneMode::static_ratio;
  if (text == "dynamic-threshold") return TuneMode::dynamic_threshold;
  if (text == "radial-prior") return TuneMode::radial_prior;
  throw Error(field, "\"" + text +
                         "\" is not a tuning mode: allowed values are static-ratio, "
                         "dynamic-threshold, radial-prior");
}

SelectionMode selection_mode(TuneMode mode) {
  if (mode == TuneMode::radial_prior) {
    throw Error("mode", "radial-prior is a baseline without selection and has no LUT row");
  }
  return mode == TuneMode::static_ratio ? SelectionMode::static_ratio
                                        : SelectionMode::dynamic_threshold;
}

double mean_prior_row_blocks(const RadialPrior& prior) {
  return prior.blocks == 0 ? 1.0
                           : static_cast<double>(prior.size()) / static_cast<double>(prior.blocks);
}

SelectionParams selection_for(const TunedParams& p, const RadialPrior& prior) {
  SelectionParams s;
  s.mode = selection_mode(p.mode);
  s.r_near = p.r_near;
  s.r_far = p.r_far;
  const double n_row = mean_prior_row_blocks(prior);
  s.tau_near = std::clamp(p.tau_near_rel / n_row, 0.0, 1.0);
  s.tau_far = std::clamp(p.tau_far_rel / n_row, 0.0, 1.0);
  return s;
}

LutEntry lut_entry_for(const TunedParams& p, MotionRegime regime, const VideoGeometry& target) {
  LutEntry e;
  e.regime = regime;
  e.prior = p.prior;
  e.selection = selection_for(p, build_radial_prior(target, p.prior));
  return e;
}

TunedParams tuned_from_lut(const LutEntry& entry, const VideoGeometry& geometry) {
  TunedParams p;
  p.mode = entry.selection.mode == SelectionMode::static_ratio ? TuneMode::static_ratio
                                                               : TuneMode::dynamic_threshold;
  p.prior = entry.prior;
  p.r_near = entry.selection.r_near;
  p.r_far = entry.selection.r_far;
  const double n_row = mean_prior_row_blocks(build_radial_prior(geometry, entry.prior));
  p.tau_near_rel = entry.selection.tau_near * n_row;
  p.tau_far_rel = entry.selection.tau_far * n_row;
  return p;
}

SearchSpace tune_search_space(TuneMode mode, const std::vector<BoundOverride>& overrides) {
  const std::vector<std::string> names = names_of(mode);
  SearchSpace space;
  for (const std::string& name : names) {
    const ParameterRule& r = *find_rule(name);
    space.parameters.push_back({r.name, r.lo, r.hi, r.scale, r.kind});
  }
  for (const BoundOverride& o : overrides) {
    const std::string field = "bounds." + o.name;
    const ParameterRule* rule = find_rule(o.name);
    const auto it = std::find(names.begin(), names.end(), o.name);
    if (rule == nullptr || it == names.end()) {
      std::string known;
      for (const std::string& n : names) known += (known.empty() ? "" : ", ") + n;
      throw Error(field, "not a parameter of mode " + to_string(mode) + "; allowed names are " + known);
    }
    const std::string shown = "[" + detail::shortest_text(o.lo) + ", " + detail::shortest_text(o.hi) + "]";
    if (rule->kind == ParameterKind::boolean) throw Error(field, shown + ": " + rule->allowed_text);
    const bool lo_ok = rule->lo_open ? o.lo > rule->allowed_lo : o.lo >= rule->allowed_lo;
    if (!(std::isfinite(o.lo) && std::isfinite(o.hi) && lo_ok && o.hi <= rule->allowed_hi)) {
      throw Error(field, shown + ": allowed range " + rule->allowed_text);
    }
    if (!(o.lo < o.hi)) throw Error(field, shown + ": the lower bound must be below the upper bound");
    Parameter& p = space.parameters[static_cast<std::size_t>(it - names.begin())];
    p.lo = o.lo;
    p.hi = o.hi;
  }
  validate(space);
  return space;
}

std::vector<BoundOverride> parse_bounds(const std::string& text) {
  std::vector<BoundOverride> out;
  std::stringstream items(text);
  std::string item;
  while (std::getline(items, item, ',')) {
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    const std::size_t colon = item.find(':', eq == std::string::npos ? 0 : eq);
    if (eq == std::string::npos || colon == std::string::npos) {
      throw Error("bounds", "\"" + item + "\": expected NAME=LO:HI, e.g. gamma=0.25:2");
    }
    BoundOverride b;
    b.name = item.substr(0, eq);
    const std::string lo = item.substr(eq + 1, colon - eq - 1), hi = item.substr(colon + 1);
    char* end = nullptr;
    b.lo = std::strtod(lo.c_str(), &end);
    const bool lo_ok = !lo.empty() && *end == '\0';
    b.hi = std::strtod(hi.c_str(), &end);
    const bool hi_ok = !hi.empty() && *end == '\0';
    if (!lo_ok || !hi_ok) {
      throw Error("bounds." + b.name, "\"" + item + "\": LO and HI must be numbers (NAME=LO:HI)");
    }
    out.push_back(b);
  }
  return out;
}

TunedParams params_from_point(TuneMode mode, const SearchSpace& space, const std::vector<double>& point) {
  TunedParams p;
  p.mode = mode;
  p.prior.first_frame_sink = true;  // Wan's attention sink is kept, not tuned
  for (int i = 0; i < space.dims(); ++i) {
    const std::string& name = space.parameters[i].name;
    const double v = point[static_cast<std::size_t>(i)];
    if (name == "gamma") p.prior.gamma = v;
    else if (name == "lambda") p.prior.lambda = v;
    else if (name == "theta_m") p.prior.theta_m = v;
    else if (name == "theta_c") p.prior.theta_c = v;
    else if (name == "dense_adjacent") p.prior.dense_adjacent = v >= 0.5;
    else if (name == "r_near") p.r_near = v;
    else if (name == "r_far") p.r_far = v;
    else if (name == "tau_near_rel") p.tau_near_rel = v;
    else if (name == "tau_far_rel") p.tau_far_rel = v;
    else throw Error("search_space." + name, "not a tuning parameter");
  }
  return p;
}

std::vector<double> point_from_params(const SearchSpace& space, const TunedParams& p) {
  std::vector<double> point;
  for (const Parameter& param : space.parameters) {
    const std::string& name = param.name;
    if (name == "gamma") point.push_back(p.prior.gamma);
    else if (name == "lambda") point.push_back(p.prior.lambda);
    else if (name == "theta_m") point.push_back(p.prior.theta_m);
    else if (name == "theta_c") point.push_back(p.prior.theta_c);
    else if (name == "dense_adjacent") point.push_back(p.prior.dense_adjacent ? 1.0 : 0.0);
    else if (name == "r_near") point.push_back(p.r_near);
    else if (name == "r_far") point.push_back(p.r_far);
    else if (name == "tau_near_rel") point.push_back(p.tau_near_rel);
    else if (name == "tau_far_rel") point.push_back(p.tau_far_rel);
    else throw Error("search_space." + name, "not a tuning parameter");
  }
  return point;
}

}  // namespace dynamicrad
