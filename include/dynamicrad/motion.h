// Motion regimes (PAPER.md part 3): low / mid / high, with the proxy drift of each.
#pragma once

#include <string>

namespace dynamicrad {

enum class MotionRegime { low, mid, high };

// Auto-regressive drift of the proxy task: 0.02 / 0.15 / 0.40.
double regime_drift(MotionRegime regime);

std::string to_string(MotionRegime regime);
// "low", "mid", "high"; throws Error(field, ...) otherwise.
MotionRegime parse_motion_regime(const std::string& text, const std::string& field = "regime");

}  // namespace dynamicrad
