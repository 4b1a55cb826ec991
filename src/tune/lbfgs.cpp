// L-BFGS (lbfgs.h).
#include "tune/lbfgs.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>

namespace dynamicrad::detail {
namespace {

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

double max_abs(const std::vector<double>& a) {
  double m = 0.0;
  for (double v : a) m = std::max(m, std::abs(v));
  return m;
}

constexpr double kArmijo = 1e-4;     // sufficient-decrease constant
constexpr double kBacktrack = 0.5;   // step shrink factor
constexpr int kMaxBacktracks = 40;

}  // namespace

double minimize_lbfgs(const std::function<double(const std::vector<double>&, std::vector<double>&)>& f,
                      std::vector<double>& x, const LbfgsOptions& options) {
  const std::size_t n = x.size();
  std::vector<double> g(n), g_new(n), x_new(n), d(n);
  auto eval = [&](const std::vector<double>& at, std::vector<double>& grad) {
    const double v = f(at, grad);
    bool finite = std::isfinite(v);
    for (double gi : grad) finite = finite && std::isfinite(gi);
    return finite ? v : std::numeric_limits<double>::infinity();
  };
  double fx = eval(x, g);
  if (!std::isfinite(fx)) return fx;
  std::deque<std::vector<double>> s_hist, y_hist;
  std::deque<double> rho_hist;

  for (int iter = 0; iter < options.max_iterations; ++iter) {
    if (max_abs(g) < options.gradient_tolerance) break;
    // Two-loop recursion: d = -H g.
    d = g;
    std::vector<double> alpha(s_hist.size());
    for (std::size_t i = s_hist.size(); i-- > 0;) {
      alpha[i] = rho_hist[i] * dot(s_hist[i], d);
      for (std::size_t j = 0; j < n; ++j) d[j] -= alpha[i] * y_hist[i][j];
    }
    if (!s_hist.empty()) {
      const double gamma = dot(s_hist.back(), y_hist.back()) / dot(y_hist.back(), y_hist.back());
      for (double& v : d) v *= gamma;
    }
    for (std::size_t i = 0; i < s_hist.size(); ++i) {
      const double beta = rho_hist[i] * dot(y_hist[i], d);
      for (std::size_t j = 0; j < n; ++j) d[j] += s_hist[i][j] * (alpha[i] - beta);
    }
    for (double& v : d) v = -v;
    double slope = dot(g, d);
    if (!(slope < 0.0)) {  // not a descent direction: fall back to steepest descent
      for (std::size_t j = 0; j < n; ++j) d[j] = -g[j];
      slope = -dot(g, g);
      s_hist.clear();
      y_hist.clear();
      rho_hist.clear();
    }
    // The first step of steepest descent is scaled to move at most 1 in any coordinate.
    double step = s_hist.empty() ? std::min(1.0, 1.0 / std::max(max_abs(d), 1e-12)) : 1.0;
    double f_new = std::numeric_limits<double>::infinity();
    bool accepted = false;
    for (int k = 0; k < kMaxBacktracks; ++k) {
      for (std::size_t j = 0; j < n; ++j) x_new[j] = x[j] + step * d[j];
      f_new = eval(x_new, g_new);
      if (f_new <= fx + kArmijo * step * slope) {
        accepted = true;
        break;
      }
      step *= kBacktrack;
    }
    if (!accepted) break;
    std::vector<double> s(n), y(n);
    for (std::size_t j = 0; j < n; ++j) {
      s[j] = x_new[j] - x[j];
      y[j] = g_new[j] - g[j];
    }
    const double sy = dot(s, y);
    const double improvement = fx - f_new;
    x = x_new;
    g = g_new;
    const double previous = fx;
    fx = f_new;
    if (sy > 1e-12) {  // keep the curvature pair only when it keeps H positive definite
      s_hist.push_back(std::move(s));
      y_hist.push_back(std::move(y));
      rho_hist.push_back(1.0 / sy);
      if (static_cast<int>(s_hist.size()) > options.memory) {
        s_hist.pop_front();
        y_hist.pop_front();
        rho_hist.pop_front();
      }
    }
    if (improvement <= options.value_tolerance * std::max(1.0, std::abs(previous))) break;
  }
  return fx;
}

}  // namespace dynamicrad::detail
