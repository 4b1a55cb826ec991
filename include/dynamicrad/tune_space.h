// What the tuner searches (PAPER.md part 3): per mode, the radial prior's gamma, lambda, theta_m,
// theta_c and dense_adjacent, plus the mode's selection pair, in a form that transfers across
// resolutions.
//
// Transferable form. gamma already scales with the frame (the band is a share of 2^ceil(log2 P)),
// the ratios r_near / r_far are shares, and lambda / theta_m / theta_c are dimensionless. The
// dynamic-threshold taus are not: a candidate's estimated mass p(C) shrinks as rows get longer.
// The tuner therefore searches tau relative to the uniform share of the row,
//   tau_rel = tau * n_row,   n_row = mean blocks per row of the radial prior (forced + candidates),
// and converts to the engine's absolute tau for a chosen geometry when it writes a LUT
// (LUT fields keep their meaning: absolute estimated-mass thresholds).
//
// Modes: the two LUT modes, and radial-prior: the prior alone without selection (the static Radial
// Attention mask), tuned only as a baseline.
#pragma once

#include <string>
#include <vector>

#include "dynamicrad/bayesopt.h"
#include "dynamicrad/geometry.h"
#include "dynamicrad/lut.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"

namespace dynamicrad {

enum class TuneMode { static_ratio, dynamic_threshold, radial_prior };

std::string to_string(TuneMode mode);
// "static-ratio", "dynamic-threshold", "radial-prior"; throws Error(field, ...) otherwise.
TuneMode parse_tune_mode(const std::string& text, const std::string& field = "mode");
// The LUT mode of a tuned mode; throws Error for radial-prior (it has no LUT row).
SelectionMode selection_mode(TuneMode mode);

struct TunedParams {
  TuneMode mode = TuneMode::static_ratio;
  RadialPriorParams prior;
  double r_near = 0.5;        // static-ratio
  double r_far = 0.25;
  double tau_near_rel = 1.0;  // dynamic-threshold, relative to the uniform share 1 / n_row
  double tau_far_rel = 1.0;
};

// n_row: mean blocks per query-block row of the prior (forced and candidates).
double mean_prior_row_blocks(const RadialPrior& prior);

// The engine's selection parameters for a prior built from params.prior (absolute taus for that
// prior's geometry). Throws Error for radial-prior.
SelectionParams selection_for(const TunedParams& params, const RadialPrior& prior);
// The LUT row for a target geometry (the prior is built there to convert the taus).
LutEntry lut_entry_for(const TunedParams& params, MotionRegime regime, const VideoGeometry& target);
// The inverse: a LUT row read as tunable parameters for a geometry.
TunedParams tuned_from_lut(const LutEntry& entry, const VideoGeometry& geometry);

// A user bound on one search parameter (natural units, lo < hi).
struct BoundOverride {
  std::string name;
  double lo = 0.0;
  double hi = 0.0;
};

// The search space of a mode: the default box with overrides applied. Names: gamma, lambda,
// theta_m, theta_c, dense_adjacent (boolean; bounds not applicable), r_near, r_far (static-ratio),
// tau_near_rel, tau_far_rel (dynamic-threshold). Throws Error("bounds.<name>", ...) for an unknown
// or inapplicable name, inverted bounds, or bounds outside the parameter's allowed range.
SearchSpace tune_search_space(TuneMode mode, const std::vector<BoundOverride>& overrides = {});

// Parses "gamma=0.25:2,r_near=0.1:0.8"; throws Error("bounds", ...) on bad syntax.
std::vector<BoundOverride> parse_bounds(const std::string& text);

// Natural-unit point of tune_search_space(mode) to parameters and back.
TunedParams params_from_point(TuneMode mode, const SearchSpace& space, const std::vector<double>& point);
std::vector<double> point_from_params(const SearchSpace& space, const TunedParams& params);

}  // namespace dynamicrad
