// Bayesian optimisation over a box of named parameters (PAPER.md part 3): a space-filling initial
// design, then a Gaussian process (gp.h) on the observations and the expected-improvement maximiser
// as the next point. Driven ask / tell, so the caller owns the objective and its timing.
//
// Coordinates. Every parameter maps onto [0, 1]: linearly, or in log space for a log-scaled one
// (lo > 0). A boolean parameter is 0 (false) or 1 (true); the GP sees it at its snapped value, the
// design spreads it evenly, and the acquisition search tries both values. Everything is
// deterministic for a seed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dynamicrad/gp.h"

namespace dynamicrad {

enum class ParameterScale { linear, log };
enum class ParameterKind { continuous, boolean };

struct Parameter {
  std::string name;
  double lo = 0.0;  // bounds in natural units, lo < hi (lo > 0 for log); ignored for booleans
  double hi = 1.0;
  ParameterScale scale = ParameterScale::linear;
  ParameterKind kind = ParameterKind::continuous;
};

struct SearchSpace {
  std::vector<Parameter> parameters;

  int dims() const { return static_cast<int>(parameters.size()); }
  // Index of a parameter; throws Error naming the known parameters when there is none.
  int index(const std::string& name) const;
};

// Throws Error("search_space.<name>", ...) for empty or inverted bounds, a non-positive log bound,
// duplicate names or no parameters.
void validate(const SearchSpace& space);

// Unit-cube coordinates to natural values (booleans snap to 0 / 1) and back.
std::vector<double> to_natural(const SearchSpace& space, const std::vector<double>& unit);
std::vector<double> to_unit(const SearchSpace& space, const std::vector<double>& natural);
// A unit point with its boolean coordinates snapped to 0 / 1.
std::vector<double> snap(const SearchSpace& space, std::vector<double> unit);

// n points of a Latin hypercube in [0, 1]^dims: each dimension's n strata [i/n, (i+1)/n) hold
// exactly one point. Of `candidates` random hypercubes the one with the largest smallest pairwise
// distance is returned (maximin). Point-major: result[i] is point i.
std::vector<std::vector<double>> latin_hypercube(int n, int dims, std::uint64_t seed,
                                                 int candidates = 20);

enum class ValueTransform { none, log };  // log: model log(value) (values must be > 0)

// Known structure of a penalised objective: value = error + penalty * max(0, target - sparsity),
// with error > 0 and sparsity observed with each value (tell's `parts` = {error, sparsity}). When
// enabled the optimiser models log(error) and sparsity with one GP each and maximises the expected
// improvement of the composed value: exact over the log-normal error, quadrature over the
// sparsity. The hinge of the penalty is then known, not learned from a handful of points.
struct PenaltyComposite {
  bool enabled = false;
  double target = 0.80;
  double penalty = 10.0;
  // Optional: the exact sparsity of a point (natural units), when it is cheap to compute (the
  // tuner builds the mask without running attention). The candidates the GP acquisition ranks
  // best are then rescored and refined with the exact sparsity, so the search never chases
  // layouts the GP wrongly believes sparse enough.
  std::function<double(const std::vector<double>&)> sparsity;
};

struct BayesOptOptions {
  int initial_points = 0;          // Latin-hypercube points before the GP; 0 = dims + 1, at least 5
  std::uint64_t seed = 1;
  ValueTransform transform = ValueTransform::log;
  double xi = 0.01;                // EI exploration margin, in standardised units
  int random_candidates = 1024;    // uniform candidates per ask
  int local_candidates = 512;      // Gaussian perturbations of the best observations per ask
  int refine_starts = 4;           // best candidates refined by pattern search
  GpFitOptions fit;                // fit.seed is derived from seed
  PenaltyComposite composite;      // when enabled, `transform` is ignored
};

// Throws Error naming a bad option.
void validate(const BayesOptOptions& options);

struct Observation {
  std::vector<double> point;  // natural units
  double value = 0.0;
};

class BayesianOptimizer {
 public:
  BayesianOptimizer(SearchSpace space, BayesOptOptions options);

  // The next point to evaluate (natural units): the design first, then the EI maximiser.
  std::vector<double> ask();
  // Records the value at a point (natural units; usually the last ask()); with the composite
  // structure, parts = {error, sparsity}. Throws Error on a non-finite value, a non-positive one
  // under the log transform, or missing parts.
  void tell(const std::vector<double>& point, double value, const std::vector<double>& parts = {});

  const SearchSpace& space() const { return space_; }
  const std::vector<Observation>& observations() const { return observations_; }
  // The best observation; throws Error when there is none.
  const Observation& best() const;
  // The GP of the last model-based ask (empty before one).
  const GaussianProcess* model() const { return has_model_ ? &gp_ : nullptr; }

 private:
  std::vector<double> propose();

  SearchSpace space_;
  BayesOptOptions options_;
  std::vector<std::vector<double>> design_;  // unit points
  std::vector<Observation> observations_;
  std::vector<std::vector<double>> unit_points_;
  std::vector<double> errors_, sparsities_;  // composite parts, parallel to observations_
  GaussianProcess gp_;           // the value (or log error under the composite)
  GaussianProcess sparsity_gp_;  // the sparsity, composite only
  bool has_model_ = false;
};

// Random search over the same box: uniform in unit coordinates (so log-uniform for log scales),
// booleans fair coins. Deterministic for the seed.
class RandomSearch {
 public:
  RandomSearch(SearchSpace space, std::uint64_t seed);
  std::vector<double> ask();

 private:
  SearchSpace space_;
  std::uint64_t seed_;
  std::uint64_t count_ = 0;  // points drawn so far: point i comes from its own derived stream
};

}  // namespace dynamicrad
