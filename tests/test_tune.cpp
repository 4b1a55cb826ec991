// Bayesian optimisation (bayesopt.h) and the tuner's search spaces (tune_space.h): the design,
// coordinates, determinism, BO against random search on Branin, the composite acquisition,
// bounds and request errors, and the transferable tau form.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "dynamicrad/bayesopt.h"
#include "dynamicrad/tune.h"
#include "dynamicrad/tune_json.h"
#include "dynamicrad/tune_space.h"
#include "test_support.h"

namespace dynamicrad {
namespace {

constexpr double kBraninMinimum = 0.397887357729738;

double branin(const std::vector<double>& p) {
  const double x = p[0], y = p[1];
  const double b = 5.1 / (4.0 * M_PI * M_PI), c = 5.0 / M_PI, t = 1.0 / (8.0 * M_PI);
  return std::pow(y - b * x * x + c * x - 6.0, 2) + 10.0 * (1.0 - t) * std::cos(x) + 10.0;
}

SearchSpace branin_space() {
  SearchSpace s;
  s.parameters = {{"x", -5.0, 10.0, ParameterScale::linear, ParameterKind::continuous},
                  {"y", 0.0, 15.0, ParameterScale::linear, ParameterKind::continuous}};
  return s;
}

TEST(LatinHypercube, EveryStratumOfEveryDimensionHoldsOnePoint) {
  for (int n : {1, 5, 8, 13}) {
    for (int dims : {1, 3, 7}) {
      const auto points = latin_hypercube(n, dims, 42);
      ASSERT_EQ(points.size(), static_cast<std::size_t>(n));
      for (int d = 0; d < dims; ++d) {
        std::set<int> strata;
        for (const auto& p : points) {
          ASSERT_GE(p[d], 0.0);
          ASSERT_LT(p[d], 1.0);
          strata.insert(static_cast<int>(std::floor(p[d] * n)));
        }
        EXPECT_EQ(strata.size(), static_cast<std::size_t>(n)) << "n " << n << " dim " << d;
      }
    }
  }
  EXPECT_EQ(latin_hypercube(6, 2, 9), latin_hypercube(6, 2, 9));
  EXPECT_NE(latin_hypercube(6, 2, 9), latin_hypercube(6, 2, 10));
  EXPECT_DR_ERROR(latin_hypercube(0, 2, 1), "points");
}

TEST(SearchSpace, CoordinatesRoundTripAndSnapBooleans) {
  SearchSpace s;
  s.parameters = {{"a", 0.125, 4.0, ParameterScale::log, ParameterKind::continuous},
                  {"b", -1.0, 3.0, ParameterScale::linear, ParameterKind::continuous},
                  {"flag", 0.0, 1.0, ParameterScale::linear, ParameterKind::boolean}};
  const std::vector<double> natural = to_natural(s, {0.5, 0.25, 0.7});
  EXPECT_NEAR(natural[0], std::sqrt(0.125 * 4.0), 1e-12);  // log midpoint
  EXPECT_NEAR(natural[1], 0.0, 1e-12);
  EXPECT_EQ(natural[2], 1.0);
  const std::vector<double> unit = to_unit(s, natural);
  EXPECT_NEAR(unit[0], 0.5, 1e-12);
  EXPECT_NEAR(unit[1], 0.25, 1e-12);
  EXPECT_EQ(unit[2], 1.0);
  EXPECT_EQ(snap(s, {0.1, 0.1, 0.49})[2], 0.0);
}

TEST(SearchSpace, BadSpacesNameTheParameter) {
  SearchSpace s;
  EXPECT_DR_ERROR(validate(s), "search_space");
  s.parameters = {{"a", 1.0, 1.0, ParameterScale::linear, ParameterKind::continuous}};
  EXPECT_DR_ERROR(validate(s), "a");
  s.parameters = {{"a", 0.0, 1.0, ParameterScale::log, ParameterKind::continuous}};
  EXPECT_DR_ERROR(validate(s), "a");
  s.parameters = {{"a", 0.0, 1.0, ParameterScale::linear, ParameterKind::continuous},
                  {"a", 0.0, 1.0, ParameterScale::linear, ParameterKind::continuous}};
  EXPECT_DR_ERROR(validate(s), "a");
}

// Mean gap to Branin's minimum after `budget` evaluations over seeds 1..seeds.
double mean_gap(bool bayes, int budget, int seeds) {
  double total = 0.0;
  for (int seed = 1; seed <= seeds; ++seed) {
    double best = 1e300;
    if (bayes) {
      BayesOptOptions o;
      o.seed = static_cast<std::uint64_t>(seed);
      o.transform = ValueTransform::log;  // Branin is positive and spans three decades
      BayesianOptimizer bo(branin_space(), o);
      for (int i = 0; i < budget; ++i) {
        const std::vector<double> p = bo.ask();
        bo.tell(p, branin(p));
      }
      best = bo.best().value;
    } else {
      RandomSearch rs(branin_space(), static_cast<std::uint64_t>(seed));
      for (int i = 0; i < budget; ++i) best = std::min(best, branin(rs.ask()));
    }
    total += best - kBraninMinimum;
  }
  return total / seeds;
}

TEST(BayesianOptimizer, BeatsRandomSearchOnBraninOnAverage) {
  const int budget = 25, seeds = 5;
  const double bo = mean_gap(true, budget, seeds);
  const double random = mean_gap(false, budget, seeds);
  EXPECT_LT(bo, random) << "BO gap " << bo << ", random gap " << random;
  EXPECT_LT(bo, 0.1) << "BO should find Branin's minimum to within 0.1 in 25 evaluations";
}

TEST(BayesianOptimizer, IsDeterministicForASeed) {
  SearchSpace s = branin_space();
  s.parameters.push_back({"flag", 0.0, 1.0, ParameterScale::linear, ParameterKind::boolean});
  auto run = [&](std::uint64_t seed) {
    BayesOptOptions o;
    o.seed = seed;
    o.transform = ValueTransform::none;
    BayesianOptimizer bo(s, o);
    std::vector<std::vector<double>> asked;
    for (int i = 0; i < 9; ++i) {
      const std::vector<double> p = bo.ask();
      EXPECT_TRUE(p[2] == 0.0 || p[2] == 1.0);
      asked.push_back(p);
      bo.tell(p, branin(p) + (p[2] > 0.5 ? 5.0 : 0.0));
    }
    return asked;
  };
  EXPECT_EQ(run(3), run(3));
  EXPECT_NE(run(3), run(4));
}

TEST(BayesianOptimizer, CompositeAcquisitionFindsTheConstrainedOptimum) {
  // error = (1 - a)^2 + 0.01 + b, sparsity = 1 - a: lowering error costs sparsity, so the optimum of
  // error + 10 * max(0, 0.8 - sparsity) sits at a = 0.2, b = 0.
  SearchSpace s;
  s.parameters = {{"a", 0.0, 1.0, ParameterScale::linear, ParameterKind::continuous},
                  {"b", 0.0, 1.0, ParameterScale::linear, ParameterKind::continuous}};
  for (bool exact : {false, true}) {
    BayesOptOptions o;
    o.seed = 2;
    o.composite.enabled = true;
    o.composite.target = 0.8;
    o.composite.penalty = 10.0;
    int exact_calls = 0;
    if (exact) {
      o.composite.sparsity = [&](const std::vector<double>& p) {
        ++exact_calls;
        return 1.0 - p[0];
      };
    }
    BayesianOptimizer bo(s, o);
    for (int i = 0; i < 20; ++i) {
      const std::vector<double> p = bo.ask();
      const double error = (1.0 - p[0]) * (1.0 - p[0]) + 0.01 + p[1];
      const double sparsity = 1.0 - p[0];
      bo.tell(p, error + 10.0 * std::max(0.0, 0.8 - sparsity), {error, sparsity});
    }
    const double optimum = 0.64 + 0.01;
    EXPECT_LT(bo.best().value, optimum * 1.02) << (exact ? "exact sparsity" : "GP sparsity");
    EXPECT_EQ(exact_calls > 0, exact);
    EXPECT_DR_ERROR(bo.tell({0.5, 0.5}, 1.0), "parts");
  }
}

TEST(BayesianOptimizer, RejectsBadObservations) {
  BayesianOptimizer bo(branin_space(), BayesOptOptions{});
  EXPECT_DR_ERROR(bo.tell({1.0}, 1.0), "point");
  EXPECT_DR_ERROR(bo.tell({1.0, 1.0}, NAN), "value");
  EXPECT_DR_ERROR(bo.tell({1.0, 1.0}, -1.0), "value");  // the log transform needs > 0
  EXPECT_DR_ERROR(bo.best(), "bayesopt");
}

TEST(TuneSpace, ModesHaveTheirParameters) {
  const SearchSpace sr = tune_search_space(TuneMode::static_ratio);
  const SearchSpace dt = tune_search_space(TuneMode::dynamic_threshold);
  const SearchSpace rp = tune_search_space(TuneMode::radial_prior);
  EXPECT_EQ(sr.dims(), 7);
  EXPECT_EQ(dt.dims(), 7);
  EXPECT_EQ(rp.dims(), 5);
  EXPECT_NO_THROW(sr.index("r_far"));
  EXPECT_NO_THROW(dt.index("tau_near_rel"));
  EXPECT_EQ(sr.parameters[sr.index("dense_adjacent")].kind, ParameterKind::boolean);
  const TunedParams p = params_from_point(TuneMode::static_ratio, sr, {0.5, 2.0, 0.3, 0.4, 1.0, 0.6, 0.2});
  EXPECT_DOUBLE_EQ(p.prior.gamma, 0.5);
  EXPECT_DOUBLE_EQ(p.prior.lambda, 2.0);
  EXPECT_TRUE(p.prior.dense_adjacent);
  EXPECT_DOUBLE_EQ(p.r_far, 0.2);
  EXPECT_EQ(point_from_params(sr, p), (std::vector<double>{0.5, 2.0, 0.3, 0.4, 1.0, 0.6, 0.2}));
}

TEST(TuneSpace, BoundsOverrideAndOutOfRangeBoundsNameTheField) {
  const SearchSpace s = tune_search_space(TuneMode::static_ratio, parse_bounds("gamma=0.25:2,r_near=0.1:0.8"));
  EXPECT_DOUBLE_EQ(s.parameters[s.index("gamma")].lo, 0.25);
  EXPECT_DOUBLE_EQ(s.parameters[s.index("r_near")].hi, 0.8);
  EXPECT_DR_ERROR(tune_search_space(TuneMode::static_ratio, {{"gamma", 0.5, 20.0}}), "gamma");
  EXPECT_DR_ERROR(tune_search_space(TuneMode::static_ratio, {{"gamma", 0.0, 1.0}}), "gamma");
  EXPECT_DR_ERROR(tune_search_space(TuneMode::static_ratio, {{"r_near", 0.8, 0.2}}), "r_near");
  EXPECT_DR_ERROR(tune_search_space(TuneMode::static_ratio, {{"theta_m", 0.0, 1.0}}), "theta_m");
  EXPECT_DR_ERROR(tune_search_space(TuneMode::static_ratio, {{"tau_far_rel", 0.1, 1.0}}), "tau_far_rel");
  EXPECT_DR_ERROR(tune_search_space(TuneMode::static_ratio, {{"dense_adjacent", 0.0, 1.0}}), "dense_adjacent");
  EXPECT_DR_ERROR(parse_bounds("gamma=0.25"), "bounds");
  EXPECT_DR_ERROR(parse_bounds("gamma=a:2"), "gamma");
}

TEST(TuneSpace, UnknownRegimeOrModeIsAnError) {
  EXPECT_DR_ERROR(parse_tune_mode("fast"), "mode");
  EXPECT_DR_ERROR(parse_motion_regime("extreme"), "regime");
  EXPECT_DR_ERROR(selection_mode(TuneMode::radial_prior), "mode");
  TuneOptions o;
  o.regimes.clear();
  EXPECT_DR_ERROR(validate(o), "regimes");
  o = TuneOptions{};
  o.trials = 0;
  EXPECT_DR_ERROR(validate(o), "trials");
  o = TuneOptions{};
  o.target_sparsity = 1.0;
  EXPECT_DR_ERROR(validate(o), "target_sparsity");
  o = TuneOptions{};
  o.bounds = {{"gamma", 2.0, 1.0}};
  EXPECT_DR_ERROR(validate(o), "gamma");
}

TEST(TuneSpace, RelativeTausConvertThroughThePriorRowLength) {
  VideoGeometry small = default_tune_geometry();
  VideoGeometry large = small;
  large.height *= 2;
  large.width *= 2;
  TunedParams p;
  p.mode = TuneMode::dynamic_threshold;
  p.prior.gamma = 0.5;
  p.tau_near_rel = 1.5;
  p.tau_far_rel = 0.5;
  const LutEntry a = lut_entry_for(p, MotionRegime::high, small);
  const LutEntry b = lut_entry_for(p, MotionRegime::high, large);
  const double n_small = mean_prior_row_blocks(build_radial_prior(small, p.prior));
  const double n_large = mean_prior_row_blocks(build_radial_prior(large, p.prior));
  EXPECT_NEAR(a.selection.tau_near, 1.5 / n_small, 1e-15);
  EXPECT_NEAR(b.selection.tau_far, 0.5 / n_large, 1e-15);
  EXPECT_LT(b.selection.tau_near, a.selection.tau_near);  // longer rows, smaller uniform share
  const TunedParams back = tuned_from_lut(b, large);
  EXPECT_NEAR(back.tau_near_rel, 1.5, 1e-12);
  EXPECT_NEAR(back.tau_far_rel, 0.5, 1e-12);
}

TEST(TuneJson, RequestsAreCheckedFieldByField) {
  const std::string good =
      R"({"regime": "high", "mode": "dynamic-threshold", "params": {"gamma": 1.0, "lambda": 0.5,
          "theta_m": 0.2, "theta_c": 0.3, "dense_adjacent": true, "tau_near_rel": 1.5,
          "tau_far_rel": 0.25}})";
  const EvaluateRequest r = parse_evaluate_request(good);
  EXPECT_EQ(r.regime, MotionRegime::high);
  EXPECT_EQ(r.params.mode, TuneMode::dynamic_threshold);
  EXPECT_DOUBLE_EQ(r.params.prior.lambda, 0.5);
  EXPECT_TRUE(r.params.prior.dense_adjacent);
  EXPECT_DOUBLE_EQ(r.params.tau_far_rel, 0.25);
  auto with = [&](const std::string& from, const std::string& to) {
    std::string text = good;
    text.replace(text.find(from), from.size(), to);
    return text;
  };
  EXPECT_DR_ERROR(parse_evaluate_request(with("\"high\"", "\"fast\"")), "regime");
  EXPECT_DR_ERROR(parse_evaluate_request(with("dynamic-threshold", "greedy")), "mode");
  EXPECT_DR_ERROR(parse_evaluate_request(with("\"gamma\": 1.0", "\"gamma\": 20")), "gamma");
  EXPECT_DR_ERROR(parse_evaluate_request(with("\"tau_near_rel\"", "\"r_near\"")), "r_near");
  EXPECT_DR_ERROR(parse_evaluate_request(with("\"dense_adjacent\": true", "\"dense_adjacent\": 1")),
                  "dense_adjacent");
  EXPECT_DR_ERROR(parse_evaluate_request("{"), "request");
  const std::string space = search_space_to_json({TuneMode::static_ratio}, {{"gamma", 0.5, 2.0}});
  EXPECT_NE(space.find("\"static-ratio\""), std::string::npos);
  EXPECT_NE(space.find("\"lo\":0.5"), std::string::npos);
}

TEST(BayesianOptimizer, DesignHasParametersPlusOnePointsAndAtLeastFive) {
  // initial_points 0: max(5, dims + 1) design points, then the GP; an explicit count is used as is.
  auto design_size = [](int dims, int initial_points) {
    SearchSpace s;
    for (int d = 0; d < dims; ++d) {
      s.parameters.push_back({"p" + std::to_string(d), 0.0, 1.0, ParameterScale::linear,
                              ParameterKind::continuous});
    }
    BayesOptOptions o;
    o.seed = 5;
    o.initial_points = initial_points;
    o.random_candidates = 16;
    o.local_candidates = 4;
    o.refine_starts = 1;
    BayesianOptimizer bo(s, o);
    for (int asked = 1; asked <= 20; ++asked) {
      const std::vector<double> p = bo.ask();
      if (bo.model() != nullptr) return asked - 1;
      double value = 0.0;
      for (double v : p) value += (v - 0.3) * (v - 0.3);
      bo.tell(p, value + 0.1);
    }
    return -1;
  };
  EXPECT_EQ(design_size(2, 0), 5);
  EXPECT_EQ(design_size(4, 0), 5);
  EXPECT_EQ(design_size(7, 0), 8);
  EXPECT_EQ(design_size(2, 3), 3);
}

TEST(BayesianOptimizer, RejectsBadOptions) {
  BayesOptOptions o;
  o.initial_points = -1;
  EXPECT_DR_ERROR(BayesianOptimizer(branin_space(), o), "initial_points");
  o = BayesOptOptions{};
  o.random_candidates = 0;
  EXPECT_DR_ERROR(BayesianOptimizer(branin_space(), o), "random_candidates");
}

TEST(BayesianOptimizer, LogTransformRejectsZero) {
  BayesianOptimizer bo(branin_space(), BayesOptOptions{});  // log transform by default
  EXPECT_DR_ERROR(bo.tell({1.0, 1.0}, 0.0), "value");
}

TEST(BayesianOptimizer, ConstantValuesStillGiveAModelBasedAsk) {
  // Every value equal: the standardisation keeps sd 1 instead of dividing by zero.
  BayesOptOptions o;
  o.seed = 7;
  o.transform = ValueTransform::none;
  BayesianOptimizer bo(branin_space(), o);
  for (int i = 0; i < 7; ++i) {
    const std::vector<double> p = bo.ask();
    for (double v : p) ASSERT_TRUE(std::isfinite(v));
    bo.tell(p, 3.0);
  }
  EXPECT_NE(bo.model(), nullptr);
}

TEST(BayesianOptimizer, CompositeTakesAZeroError) {
  // A layout equal to dense has error 0: its log is floored, not -inf.
  SearchSpace s;
  s.parameters = {{"a", 0.0, 1.0, ParameterScale::linear, ParameterKind::continuous}};
  BayesOptOptions o;
  o.seed = 3;
  o.composite.enabled = true;
  o.composite.target = 0.5;
  o.composite.penalty = 10.0;
  BayesianOptimizer bo(s, o);
  for (int i = 0; i < 7; ++i) {
    const std::vector<double> p = bo.ask();
    ASSERT_TRUE(std::isfinite(p[0]));
    const double error = p[0] < 0.5 ? 0.0 : p[0];
    const double sparsity = 1.0 - p[0];
    bo.tell(p, error + 10.0 * std::max(0.0, 0.5 - sparsity), {error, sparsity});
  }
  EXPECT_NE(bo.model(), nullptr);
}

TEST(BayesianOptimizer, NeverAsksAnObservedPointAgain) {
  // The minimum sits on the boundary, where the acquisition's best point clamps onto an observed
  // one: the optimiser must move elsewhere.
  SearchSpace s;
  s.parameters = {{"a", 0.0, 1.0, ParameterScale::linear, ParameterKind::continuous},
                  {"flag", 0.0, 1.0, ParameterScale::linear, ParameterKind::boolean}};
  BayesOptOptions o;
  o.seed = 11;
  o.transform = ValueTransform::none;
  BayesianOptimizer bo(s, o);
  for (int i = 0; i < 25; ++i) {
    const std::vector<double> p = bo.ask();
    if (bo.model() != nullptr) {
      for (const Observation& seen : bo.observations()) {
        const double d = std::abs(seen.point[0] - p[0]) + std::abs(seen.point[1] - p[1]);
        EXPECT_GT(d, 1e-9) << "ask " << i << " repeats (" << p[0] << ", " << p[1] << ")";
      }
    }
    bo.tell(p, p[0] + 0.5 * p[1]);
  }
}

TEST(SearchSpace, ABooleanAtTheMidpointIsTrueLikeSnap) {
  SearchSpace s;
  s.parameters = {{"flag", 0.0, 1.0, ParameterScale::linear, ParameterKind::boolean}};
  EXPECT_EQ(snap(s, {0.5})[0], 1.0);
  EXPECT_EQ(to_natural(s, {0.5})[0], 1.0);
  EXPECT_EQ(to_natural(s, {0.4999})[0], 0.0);
  EXPECT_EQ(to_unit(s, {0.5})[0], 1.0);
}

TEST(TuneSpace, AZeroLowerBoundOfGammaIsOutsideItsOpenRange) {
  try {
    tune_search_space(TuneMode::static_ratio, {{"gamma", 0.0, 1.0}});
    ADD_FAILURE() << "gamma=0:1 was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.field(), "bounds.gamma");
    EXPECT_NE(std::string(e.what()).find("allowed range (0, 16]"), std::string::npos) << e.what();
  }
}

TEST(TuneSpace, AnEmptyBoundIsRefusedAsAnOverride) {
  try {
    tune_search_space(TuneMode::static_ratio, {{"r_near", 0.5, 0.5}});
    ADD_FAILURE() << "r_near=0.5:0.5 was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.field(), "bounds.r_near");
    EXPECT_NE(std::string(e.what()).find("the lower bound must be below the upper bound"), std::string::npos)
        << e.what();
  }
}

TEST(TuneSpace, ParseBoundsSkipsEmptyItems) {
  const std::vector<BoundOverride> b = parse_bounds(",gamma=0.25:2,,r_near=0.1:0.8,");
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].name, "gamma");
  EXPECT_DOUBLE_EQ(b[0].hi, 2.0);
  EXPECT_EQ(b[1].name, "r_near");
  EXPECT_DOUBLE_EQ(b[1].lo, 0.1);
  EXPECT_TRUE(parse_bounds("").empty());
}

}  // namespace
}  // namespace dynamicrad
