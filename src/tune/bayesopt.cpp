// The Bayesian optimiser (bayesopt.h): design, GP model, expected-improvement search.
//
// Each model-based ask:
//   1. transforms the observed values (log when asked), standardises them to mean 0 / variance 1
//      and fits the GP's hyperparameters (warm-started from the previous ask's); under the
//      composite structure it fits one GP to log(error) and one to the sparsity instead, and the
//      acquisition is the expected improvement of error + penalty * shortfall below the best
//      observed value;
//   2. scores random_candidates uniform points and local_candidates Gaussian perturbations of the
//      best observations (steps of 0.02, 0.08 and 0.2 in unit coordinates, booleans flipped with
//      probability 0.2) by expected improvement below the best standardised observation;
//   3. refines the refine_starts best candidates by pattern search over the continuous
//      coordinates (steps halving from 0.05 to 1e-4), then tries flipping each boolean;
//   4. returns the best point, unless it repeats an observation, in which case the candidate of
//      largest posterior variance is taken instead (the model has nothing left to exploit there).
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <utility>
#include <string>

#include "dynamicrad/bayesopt.h"
#include "dynamicrad/error.h"
#include "core/number_text.h"
#include "tune/random.h"

namespace dynamicrad {
namespace {

constexpr int kMinInitialPoints = 5;
constexpr int kLocalCentres = 5;                       // best observations perturbed
constexpr double kLocalSteps[] = {0.02, 0.08, 0.2};    // perturbation scales, unit coordinates
constexpr double kFlipProbability = 0.2;
constexpr double kPatternStart = 0.05;
constexpr double kPatternEnd = 1e-4;
constexpr int kPatternMaxMoves = 200;
constexpr double kRepeatDistance = 1e-6;  // unit-space distance that counts as the same point
constexpr double kMinError = 1e-12;       // floor of the composite's error before its log
// Quadrature of the composite EI over the sparsity's Gaussian: kQuadrature points evenly spaced on
// [-kQuadratureSpan, kQuadratureSpan] standard deviations, weighted by the normal density.
constexpr int kQuadrature = 41;
constexpr double kQuadratureSpan = 4.0;
constexpr double kInvSqrt2 = 0.7071067811865476;
// With an exact sparsity (each value a mask build, milliseconds): the kExactScreen candidates the
// GP acquisition ranks best are rescored exactly, and the best kExactRefineStarts of them refined
// with at most kExactRefineMoves moves each.
constexpr int kExactScreen = 16;
constexpr int kExactRefineMoves = 24;
constexpr int kExactRefineStarts = 2;

double normal_cdf(double z) { return 0.5 * std::erfc(-z * kInvSqrt2); }

// E[max(0, b - exp(F))] for F ~ N(mu, sd^2): the partial expectation of a log-normal.
double lognormal_improvement(double b, double mu, double sd) {
  if (!(b > 0.0)) return 0.0;
  if (!(sd > 0.0)) return std::max(0.0, b - std::exp(mu));
  const double z = (std::log(b) - mu) / sd;
  return b * normal_cdf(z) - std::exp(mu + 0.5 * sd * sd) * normal_cdf(z - sd);
}

// Standardises values in place; returns {mean, sd} (sd 1 when all values are equal).
std::pair<double, double> standardise(std::vector<double>& y) {
  double mean = 0.0;
  for (double v : y) mean += v;
  mean /= static_cast<double>(y.size());
  double var = 0.0;
  for (double v : y) var += (v - mean) * (v - mean);
  const double sd = var > 0.0 ? std::sqrt(var / static_cast<double>(y.size())) : 1.0;
  for (double& v : y) v = (v - mean) / sd;
  return {mean, sd};
}

double squared_distance(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return s;
}

}  // namespace

void validate(const BayesOptOptions& o) {
  if (o.initial_points < 0) {
    throw Error("bayesopt.initial_points", std::to_string(o.initial_points) + ": allowed range [0, inf)");
  }
  if (!(o.xi >= 0.0 && std::isfinite(o.xi))) {
    throw Error("bayesopt.xi", detail::shortest_text(o.xi) + ": allowed range [0, inf)");
  }
  if (o.random_candidates < 1) {
    throw Error("bayesopt.random_candidates", std::to_string(o.random_candidates) + ": allowed range [1, inf)");
  }
  if (o.local_candidates < 0) {
    throw Error("bayesopt.local_candidates", std::to_string(o.local_candidates) + ": allowed range [0, inf)");
  }
  if (o.refine_starts < 0) {
    throw Error("bayesopt.refine_starts", std::to_string(o.refine_starts) + ": allowed range [0, inf)");
  }
}

BayesianOptimizer::BayesianOptimizer(SearchSpace space, BayesOptOptions options)
    : space_(std::move(space)),
      options_(options),
      gp_(std::max(1, space_.dims())),
      sparsity_gp_(std::max(1, space_.dims())) {
  validate(space_);
  validate(options_);
  const int n = options_.initial_points > 0 ? options_.initial_points
                                            : std::max(kMinInitialPoints, space_.dims() + 1);
  design_ = latin_hypercube(n, space_.dims(), detail::derive_seed(options_.seed, 41));
}

const Observation& BayesianOptimizer::best() const {
  if (observations_.empty()) throw Error("bayesopt", "no observations yet");
  const Observation* best = &observations_.front();
  for (const Observation& o : observations_) {
    if (o.value < best->value) best = &o;
  }
  return *best;
}

void BayesianOptimizer::tell(const std::vector<double>& point, double value,
                             const std::vector<double>& parts) {
  if (static_cast<int>(point.size()) != space_.dims()) {
    throw Error("bayesopt.point", "has " + std::to_string(point.size()) + " coordinates, expected " +
                                      std::to_string(space_.dims()));
  }
  if (!std::isfinite(value)) throw Error("bayesopt.value", "not finite");
  if (options_.composite.enabled) {
    if (parts.size() != 2 || !std::isfinite(parts[0]) || !std::isfinite(parts[1])) {
      throw Error("bayesopt.parts", "the composite objective needs {error, sparsity}, both finite");
    }
    errors_.push_back(std::max(parts[0], kMinError));
    sparsities_.push_back(parts[1]);
  } else if (options_.transform == ValueTransform::log && !(value > 0.0)) {
    throw Error("bayesopt.value", detail::shortest_text(value) + ": the log transform needs values > 0");
  }
  observations_.push_back({point, value});
  unit_points_.push_back(snap(space_, to_unit(space_, point)));
}

std::vector<double> BayesianOptimizer::ask() {
  const std::size_t n = observations_.size();
  if (n < design_.size()) return to_natural(space_, snap(space_, design_[n]));
  return to_natural(space_, propose());
}

std::vector<double> BayesianOptimizer::propose() {
  const int dims = space_.dims();
  const std::size_t n = observations_.size();
  // 1. Standardised (transformed) values, the fitted GP(s) and the acquisition.
  std::vector<double> x;
  x.reserve(n * static_cast<std::size_t>(dims));
  for (const auto& p : unit_points_) x.insert(x.end(), p.begin(), p.end());
  GpFitOptions fit = options_.fit;
  fit.seed = detail::derive_seed(options_.seed, 42);
  std::vector<double> y(n);
  const PenaltyComposite& composite = options_.composite;
  for (std::size_t i = 0; i < n; ++i) {
    if (composite.enabled) {
      y[i] = std::log(errors_[i]);
    } else {
      y[i] = options_.transform == ValueTransform::log ? std::log(observations_[i].value)
                                                       : observations_[i].value;
    }
  }
  std::vector<double> ranking = y;  // what "best observation" means for the local candidates
  const auto [y_mean, y_sd] = standardise(y);
  gp_.set_data(x, y);
  gp_.fit(fit);
  has_model_ = true;
  std::function<double(const std::vector<double>&)> acquisition;
  std::function<double(const std::vector<double>&)> exact;  // composite with an exact sparsity
  if (composite.enabled) {
    std::vector<double> s = sparsities_;
    const auto [s_mean, s_sd] = standardise(s);
    sparsity_gp_.set_data(x, s);
    sparsity_gp_.fit(fit);
    double best = std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < n; ++i) {
      ranking[i] = observations_[i].value;
      best = std::min(best, observations_[i].value);
    }
    acquisition = [&, y_mean = y_mean, y_sd = y_sd, s_mean = s_mean, s_sd = s_sd,
                   best](const std::vector<double>& p) {
      const GpPrediction f = gp_.predict(p.data());
      const GpPrediction g = sparsity_gp_.predict(p.data());
      const double mu = y_mean + y_sd * f.mean, sd = y_sd * std::sqrt(f.variance);
      const double s_mu = s_mean + s_sd * g.mean, s_sigma = s_sd * std::sqrt(g.variance);
      double total = 0.0, weights = 0.0;
      for (int k = 0; k < kQuadrature; ++k) {
        const double z = -kQuadratureSpan + 2.0 * kQuadratureSpan * k / (kQuadrature - 1);
        const double w = std::exp(-0.5 * z * z);
        const double shortfall = std::max(0.0, composite.target - (s_mu + s_sigma * z));
        total += w * lognormal_improvement(best - composite.penalty * shortfall, mu, sd);
        weights += w;
        if (!(s_sigma > 0.0)) break;  // a certain sparsity needs one node
      }
      return total / weights;
    };
    if (composite.sparsity) {
      exact = [&, y_mean = y_mean, y_sd = y_sd, best](const std::vector<double>& p) {
        const GpPrediction f = gp_.predict(p.data());
        const double shortfall =
            std::max(0.0, composite.target - composite.sparsity(to_natural(space_, p)));
        return lognormal_improvement(best - composite.penalty * shortfall, y_mean + y_sd * f.mean,
                                     y_sd * std::sqrt(f.variance));
      };
    }
  } else {
    const double best_y = *std::min_element(y.begin(), y.end());
    acquisition = [&, best_y](const std::vector<double>& p) {
      const GpPrediction g = gp_.predict(p.data());
      return expected_improvement(g.mean, std::sqrt(g.variance), best_y, options_.xi);
    };
  }
  // 2. Candidates.
  detail::SplitMix rng(detail::derive_seed(options_.seed, 43, n));
  std::vector<std::vector<double>> candidates;
  for (int c = 0; c < options_.random_candidates; ++c) {
    std::vector<double> p(static_cast<std::size_t>(dims));
    for (double& v : p) v = rng.uniform();
    candidates.push_back(snap(space_, p));
  }
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return ranking[a] < ranking[b]; });
  const std::size_t centres = std::min<std::size_t>(kLocalCentres, n);
  for (int c = 0; c < options_.local_candidates; ++c) {
    const std::vector<double>& centre = unit_points_[order[static_cast<std::size_t>(c) % centres]];
    const double step = kLocalSteps[c % 3];
    std::vector<double> p = centre;
    for (int d = 0; d < dims; ++d) {
      if (space_.parameters[d].kind == ParameterKind::boolean) {
        if (rng.uniform() < kFlipProbability) p[d] = 1.0 - p[d];
      } else {
        p[d] += step * rng.normal();
      }
    }
    candidates.push_back(snap(space_, p));
  }
  std::vector<double> scores(candidates.size());
  for (std::size_t c = 0; c < candidates.size(); ++c) scores[c] = acquisition(candidates[c]);

  // 3. Pattern-search refinement of the best candidates (continuous coordinates, then booleans).
  auto refine = [&](std::vector<double> p, double score, const auto& score_of, int max_moves) {
    double step = kPatternStart;
    for (int moves = 0; moves < max_moves && step >= kPatternEnd;) {
      bool improved = false;
      for (int d = 0; d < dims && moves < max_moves; ++d) {
        if (space_.parameters[d].kind == ParameterKind::boolean) continue;
        for (double sign : {1.0, -1.0}) {
          std::vector<double> q = p;
          q[d] = std::clamp(q[d] + sign * step, 0.0, 1.0);
          const double qs = score_of(q);
          ++moves;
          if (qs > score) {
            p = std::move(q);
            score = qs;
            improved = true;
            break;
          }
        }
      }
      if (!improved) step *= 0.5;
    }
    for (int d = 0; d < dims; ++d) {
      if (space_.parameters[d].kind != ParameterKind::boolean) continue;
      std::vector<double> q = p;
      q[d] = 1.0 - q[d];
      const double qs = score_of(q);
      if (qs > score) {
        p = std::move(q);
        score = qs;
      }
    }
    return std::make_pair(p, score);
  };
  std::vector<std::size_t> ranked(candidates.size());
  for (std::size_t c = 0; c < ranked.size(); ++c) ranked[c] = c;
  auto by_score = [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; };
  const std::size_t screen = std::min<std::size_t>(
      exact ? kExactScreen : static_cast<std::size_t>(options_.refine_starts), ranked.size());
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(screen), ranked.end(),
                    by_score);
  ranked.resize(screen);
  if (exact) {  // rescore the screened candidates with the exact sparsity
    for (std::size_t c : ranked) scores[c] = exact(candidates[c]);
    std::sort(ranked.begin(), ranked.end(), by_score);
  }
  const std::size_t starts = std::min<std::size_t>(
      static_cast<std::size_t>(exact ? std::min(kExactRefineStarts, options_.refine_starts)
                                     : options_.refine_starts),
      ranked.size());
  std::vector<double> best_point = candidates[ranked.empty() ? 0 : ranked[0]];
  double best_score = ranked.empty() ? 0.0 : scores[ranked[0]];
  for (std::size_t s = 0; s < starts; ++s) {
    const auto [p, score] = exact ? refine(candidates[ranked[s]], scores[ranked[s]], exact, kExactRefineMoves)
                                  : refine(candidates[ranked[s]], scores[ranked[s]], acquisition,
                                           kPatternMaxMoves);
    if (score > best_score) {
      best_score = score;
      best_point = p;
    }
  }

  // 4. Never repeat an observation: fall back to the most uncertain candidate.
  auto repeats = [&](const std::vector<double>& p) {
    for (const auto& u : unit_points_) {
      if (squared_distance(p, u) < kRepeatDistance * kRepeatDistance) return true;
    }
    return false;
  };
  if (!(best_score > 0.0) || repeats(best_point)) {
    double most = -1.0;
    for (const auto& c : candidates) {
      const double v = gp_.predict(c.data()).variance;
      if (v > most && !repeats(c)) {
        most = v;
        best_point = c;
      }
    }
  }
  return best_point;
}

}  // namespace dynamicrad
