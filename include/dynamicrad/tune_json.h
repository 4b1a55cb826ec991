// JSON forms the tuner exchanges with outside optimisers (scripts/compare_tpe.py drives
// `dynamicrad tune --evaluate` with them, so Python needs no bindings).
//
// Search space (one object per mode):
//   {"static-ratio": [{"name": "gamma", "lo": 0.125, "hi": 4, "scale": "log",
//                      "kind": "continuous"}, ...], "dynamic-threshold": [...]}
// Evaluation request, one per line on --evaluate's input:
//   {"regime": "high", "mode": "dynamic-threshold",
//    "params": {"gamma": 1.0, "lambda": 1.0, "theta_m": 0.5, "theta_c": 0.3,
//               "dense_adjacent": false, "tau_near_rel": 1.0, "tau_far_rel": 2.0}}
//   "params" must hold exactly the mode's search parameters (tune_space.h), each inside the
//   parameter's allowed range (the search box is not enforced, so outside optimisers may roam).
// Evaluation result:
//   {"loss": ..., "error": ..., "sparsity": ..., "relative_l2": ..., "seconds": ...}
#pragma once

#include <string>
#include <vector>

#include "dynamicrad/motion.h"
#include "dynamicrad/objective.h"
#include "dynamicrad/tune_space.h"

namespace dynamicrad {

std::string search_space_to_json(const std::vector<TuneMode>& modes,
                                 const std::vector<BoundOverride>& bounds);

struct EvaluateRequest {
  MotionRegime regime = MotionRegime::mid;
  TunedParams params;
};

// Throws Error naming the JSON path and what is allowed.
EvaluateRequest parse_evaluate_request(const std::string& json_text);

// One line, no trailing newline.
std::string evaluation_to_json(const Evaluation& evaluation);

}  // namespace dynamicrad
