// The tuner's loop over regimes, modes and methods (tune.h).
#include "dynamicrad/tune.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <memory>
#include <string>

#include "core/clock.h"
#include "dynamicrad/bayesopt.h"
#include "dynamicrad/error.h"
#include "tune/random.h"

namespace dynamicrad {
namespace {

using detail::seconds_since;

// Seed purposes of the tuner's streams.
constexpr std::uint64_t kBayesPurpose = 51;
constexpr std::uint64_t kRandomPurpose = 52;

std::uint64_t cell_seed(std::uint64_t seed, std::uint64_t purpose, MotionRegime regime, TuneMode mode) {
  return detail::derive_seed(seed, purpose,
                             static_cast<std::uint64_t>(regime) * 8 + static_cast<std::uint64_t>(mode));
}

}  // namespace

VideoGeometry default_tune_geometry() {
  VideoGeometry g;
  g.frames = 32;
  g.height = 12;
  g.width = 16;
  g.heads = 4;
  g.head_dim = 64;
  g.block_size = 32;
  return g;
}

std::string to_string(SearchMethod method) { return method == SearchMethod::bayes ? "bo" : "random"; }

void validate(const TuneOptions& o) {
  validate(o.geometry);
  if (o.lut_geometry) validate(*o.lut_geometry);
  if (o.trials < 1 || o.trials > 10000) {
    throw Error("tune.trials", std::to_string(o.trials) + ": allowed range [1, 10000]");
  }
  if (o.random_trials < 0 || o.random_trials > 100000) {
    throw Error("tune.random_trials", std::to_string(o.random_trials) + ": allowed range [0, 100000]");
  }
  if (o.initial_points < 0 || o.initial_points > o.trials) {
    throw Error("tune.initial_points", std::to_string(o.initial_points) + ": allowed range [0, trials = " +
                                           std::to_string(o.trials) + "]");
  }
  if (o.regimes.empty()) throw Error("tune.regimes", "empty; allowed values are low, mid, high");
  if (o.modes.empty()) {
    throw Error("tune.modes", "empty; allowed values are static-ratio, dynamic-threshold, radial-prior");
  }
  validate(objective_options(o, MotionRegime::mid));
  // A bound must name a parameter of at least one mode that runs, and be valid there.
  for (const BoundOverride& b : o.bounds) {
    bool used = false;
    for (TuneMode mode : o.modes) {
      const SearchSpace plain = tune_search_space(mode);
      bool has = false;
      for (const Parameter& p : plain.parameters) has = has || p.name == b.name;
      if (has) {
        tune_search_space(mode, {b});
        used = true;
      }
    }
    if (!used) {
      tune_search_space(o.modes.front(), {b});  // throws naming the allowed names
    }
  }
}

ObjectiveOptions objective_options(const TuneOptions& o, MotionRegime regime) {
  ObjectiveOptions objective;
  objective.geometry = o.geometry;
  objective.regime = regime;
  objective.scene = o.scene;
  objective.scene_seed = o.scene_seed;
  objective.target_sparsity = o.target_sparsity;
  objective.penalty = o.penalty;
  objective.threads = o.threads;
  objective.device = o.device;
  return objective;
}

std::vector<double> best_so_far(const std::vector<TrialRecord>& trials, MotionRegime regime,
                                TuneMode mode, SearchMethod method) {
  std::vector<double> curve;
  double best = std::numeric_limits<double>::infinity();
  for (const TrialRecord& t : trials) {
    if (t.regime != regime || t.mode != mode || t.method != method) continue;
    best = std::min(best, t.evaluation.loss);
    curve.push_back(best);
  }
  return curve;
}

TuneResult tune(const TuneOptions& o, const TuneCallback& progress,
                const ObjectiveFactory& make_objective) {
  validate(o);
  TuneResult result;
  const int cells = static_cast<int>(o.regimes.size() * o.modes.size());
  int cell = 0;
  auto report = [&](TuneProgress p) {
    if (progress) progress(p);
  };
  for (MotionRegime regime : o.regimes) {
    TuneProgress scene_stage;
    scene_stage.stage = TuneProgress::Stage::scene;
    scene_stage.cell = cell;
    scene_stage.cells = cells;
    scene_stage.regime = regime;
    report(scene_stage);
    const std::unique_ptr<TuneObjective> owned =
        make_objective ? make_objective(objective_options(o, regime))
                       : std::make_unique<ProxyObjective>(objective_options(o, regime));
    if (!owned) throw Error("tune.objective", "the objective factory returned nothing");
    const TuneObjective& objective = *owned;
    result.scene_seconds += objective.setup_seconds();

    for (TuneMode mode : o.modes) {
      // Only the bounds that belong to this mode's parameters apply to it.
      const SearchSpace plain = tune_search_space(mode);
      std::vector<BoundOverride> bounds;
      for (const BoundOverride& b : o.bounds) {
        for (const Parameter& p : plain.parameters) {
          if (p.name == b.name) bounds.push_back(b);
        }
      }
      const SearchSpace space = tune_search_space(mode, bounds);
      CellResult cell_result;
      cell_result.regime = regime;
      cell_result.mode = mode;

      auto run_method = [&](SearchMethod method, int trials, auto&& suggest, auto&& observe) {
        double best = std::numeric_limits<double>::infinity();
        TrialRecord best_record;
        for (int t = 1; t <= trials; ++t) {
          TrialRecord record;
          record.regime = regime;
          record.mode = mode;
          record.method = method;
          record.trial = t;
          const auto start = std::chrono::steady_clock::now();
          const std::vector<double> point = suggest();
          record.suggest_seconds = seconds_since(start);
          record.params = params_from_point(mode, space, point);
          record.evaluation = objective.evaluate(record.params);
          observe(point, record.evaluation);
          if (record.evaluation.loss < best) {
            best = record.evaluation.loss;
            best_record = record;
          }
          result.trials.push_back(record);
          TuneProgress p;
          p.cell = cell;
          p.cells = cells;
          p.regime = regime;
          p.mode = mode;
          p.method = method;
          p.trials = trials;
          p.trial = &result.trials.back();
          p.best_loss = best;
          report(p);
        }
        return best_record;
      };

      BayesOptOptions bo;
      bo.seed = cell_seed(o.seed, kBayesPurpose, regime, mode);
      bo.initial_points = o.initial_points;
      // The loss is error + penalty * shortfall (objective.h): let the optimiser use that.
      bo.composite.enabled = true;
      bo.composite.target = o.target_sparsity;
      bo.composite.penalty = o.penalty;
      // The sparsity needs only the mask: the acquisition may compute it exactly.
      bo.composite.sparsity = [&](const std::vector<double>& point) {
        return objective.sparsity(params_from_point(mode, space, point));
      };
      BayesianOptimizer optimizer(space, bo);
      auto start = std::chrono::steady_clock::now();
      cell_result.best_bayes = run_method(
          SearchMethod::bayes, o.trials, [&] { return optimizer.ask(); },
          [&](const std::vector<double>& point, const Evaluation& e) {
            optimizer.tell(point, e.loss, {e.error, e.sparsity});
          });
      cell_result.seconds = seconds_since(start);
      result.bayes_seconds += cell_result.seconds;

      if (o.random_trials > 0) {
        RandomSearch random(space, cell_seed(o.seed, kRandomPurpose, regime, mode));
        start = std::chrono::steady_clock::now();
        cell_result.best_random = run_method(
            SearchMethod::random, o.random_trials, [&] { return random.ask(); },
            [](const std::vector<double>&, const Evaluation&) {});
        result.random_seconds += seconds_since(start);
      }
      if (mode != TuneMode::radial_prior) {
        result.lut.entries.push_back(
            lut_entry_for(cell_result.best_bayes.params, regime, o.lut_geometry.value_or(o.geometry)));
      }
      result.cells.push_back(cell_result);
      ++cell;
    }
  }
  return result;
}

}  // namespace dynamicrad
