#include "dynamicrad/motion.h"

#include "dynamicrad/error.h"

namespace dynamicrad {

double regime_drift(MotionRegime regime) {
  switch (regime) {
    case MotionRegime::low: return 0.02;
    case MotionRegime::mid: return 0.15;
    case MotionRegime::high: return 0.40;
  }
  return 0.15;
}

std::string to_string(MotionRegime regime) {
  switch (regime) {
    case MotionRegime::low: return "low";
    case MotionRegime::mid: return "mid";
    case MotionRegime::high: return "high";
  }
  return "?";
}

MotionRegime parse_motion_regime(const std::string& text, const std::string& field) {
  if (text == "low") return MotionRegime::low;
  if (text == "mid") return MotionRegime::mid;
  if (text == "high") return MotionRegime::high;
  throw Error(field, "\"" + text + "\" is not a motion regime: allowed values are low, mid, high");
}

}  // namespace dynamicrad
