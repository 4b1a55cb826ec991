// A small unconstrained L-BFGS minimiser (Nocedal & Wright, algorithm 7.4) with a backtracking
// Armijo line search, for the GP's hyperparameters. Bounds are the caller's business (the GP maps a
// box onto the real line).
#pragma once

#include <functional>
#include <vector>

namespace dynamicrad::detail {

struct LbfgsOptions {
  int max_iterations = 80;
  int memory = 6;                   // correction pairs kept
  double gradient_tolerance = 1e-6; // stop when max |g_i| falls under this
  double value_tolerance = 1e-10;   // stop when a step improves f by less than this (relative)
};

// f(x, grad) returns f at x and writes its gradient. Minimises from x (updated in place) and
// returns the final value. A non-finite value is treated as +infinity (the line search backs off).
double minimize_lbfgs(const std::function<double(const std::vector<double>&, std::vector<double>&)>& f,
                      std::vector<double>& x, const LbfgsOptions& options);

}  // namespace dynamicrad::detail
