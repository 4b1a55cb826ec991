// Flags shared by the subcommands that build masks: the video geometry (a preset or explicit sizes)
// and the LUT row (regime, mode, LUT file, per-parameter overrides), and their conversion into the
// library's options structs. Bad values throw UsageError naming the flag.
#pragma once

#include <string>
#include <vector>

#include "dynamicrad/geometry.h"
#include "dynamicrad/lut.h"
#include "flags.h"

namespace dynamicrad::cli {

// Geometry flags: --preset, --frames, --height, --width, --text-tokens, --text-placement, --heads,
// --head-dim, --block, --order. `defaults` gives the explicit sizes used without a preset.
std::vector<FlagSpec> geometry_flags(const VideoGeometry& defaults);
// A preset (when given) with any explicit flag overriding its field, else the explicit sizes;
// validated. `label` receives the preset name or "custom".
VideoGeometry geometry_from_flags(const FlagSet& flags, std::string* label);

// LUT flags: --regime, --mode, --lut, --gamma, --lambda, --theta-m, --theta-c, --dense-adjacent,
// --first-frame-sink, --r-near, --r-far, --tau-near, --tau-far.
std::vector<FlagSpec> lut_flags();

struct LutChoice {
  MotionRegime regime = MotionRegime::mid;
  LutEntry entry;          // the LUT row with the overrides applied, validated
  std::string lut_source;  // "built-in" or the file path
};

// Loads the LUT (a bad file, or one without the asked-for row, throws dynamicrad::Error naming it: a
// runtime error, not a usage error), picks the row and applies the overrides.
LutChoice lut_choice_from_flags(const FlagSet& flags);

// "gamma 1 lambda 1 theta_m 0.6 ..." and "r_near 0.5 r_far 0.2" (or the two taus) for reports.
std::string describe(const RadialPriorParams& prior);
std::string describe(const SelectionParams& selection);
std::string describe(const VideoGeometry& geometry);

}  // namespace dynamicrad::cli
