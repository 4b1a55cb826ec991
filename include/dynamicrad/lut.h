// The lookup table (LUT): one row per (motion regime, selection mode) with the radial prior and
// selection parameters to use (PAPER.md part 3). The offline tuner writes it; the engine, the router
// and the integration read it.
//
// JSON form:
//   {
//     "format": "dynamicrad-lut",
//     "version": 1,
//     "calibrated_for": "wan2.1-14b-720p",
//     "rows": [
//       { "regime": "low", "mode": "static-ratio",
//         "prior": { "gamma": 1.0, "lambda": 1.0, "theta_m": 0.6, "theta_c": 0.333,
//                    "dense_adjacent": false, "first_frame_sink": true },
//         "selection": { "r_near": 0.5, "r_far": 0.25 } },
//       { "regime": "high", "mode": "dynamic-threshold",
//         "prior": { ... },
//         "selection": { "tau_near": 0.002, "tau_far": 0.004 } }
//     ]
//   }
// "calibrated_for" (optional) names the preset (presets.h) whose geometry the dynamic-threshold taus
// are absolute for: `dynamicrad tune --lut-geometry NAME` writes it, and integrations convert the
// taus from it to each call's geometry (tune_space.h). Every prior field is required; "selection" holds exactly the fields of the row's mode. Unknown
// fields are errors (a typo must not silently fall back to a default). A (regime, mode) pair appears
// at most once.
#pragma once

#include <string>
#include <vector>

#include "dynamicrad/motion.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"

namespace dynamicrad {

struct LutEntry {
  MotionRegime regime = MotionRegime::mid;
  RadialPriorParams prior;
  SelectionParams selection;  // selection.mode is the row's mode
};

struct Lut {
  std::vector<LutEntry> entries;
  std::string calibrated_for;  // a preset name, or empty when the LUT does not say

  // Throws Error when the table has no such row.
  const LutEntry& find(MotionRegime regime, SelectionMode mode) const;
};

// The mode the paper pairs with a regime: static-ratio for low and mid motion, dynamic-threshold for
// high motion.
SelectionMode default_mode(MotionRegime regime);

// The built-in table (all three regimes, both modes).
Lut default_lut();

// Parses and validates; errors read "<source>: rows[2].prior.gamma = -1: allowed range (0, 16]".
Lut parse_lut(const std::string& json_text, const std::string& source);
// Reads a file; errors name the path.
Lut load_lut(const std::string& path);
std::string lut_to_json(const Lut& lut);
// Writes atomically (a temporary file renamed into place), so a failure leaves no partial file.
void save_lut(const Lut& lut, const std::string& path);

}  // namespace dynamicrad
