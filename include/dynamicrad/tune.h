// The offline tuner (PAPER.md part 3, issue 4): for every (motion regime, mode) cell, Bayesian
// optimisation (bayesopt.h) of the radial prior and selection parameters on the proxy objective
// (objective.h), with a random-search baseline on the same objective, producing the LUT.
//
// Per regime the proxy scene and its dense attention are built once and shared by the regime's
// modes and methods. Every cell and method has its own seed derived from `seed`, so a cell's
// trials do not depend on which other cells run. The library never prints: progress goes to the
// caller's callback.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dynamicrad/geometry.h"
#include "dynamicrad/lut.h"
#include "dynamicrad/motion.h"
#include "dynamicrad/objective.h"
#include "dynamicrad/proxy.h"
#include "dynamicrad/tune_space.h"

namespace dynamicrad {

// The scaled-down CPU proxy geometry: 32 latent frames of 12 x 16 tokens (6,144 tokens), 4 heads
// of 64, block 32. Enough frames that the forced blocks (same frame, first-frame sink) leave room
// for 0.90 sparsity, and small enough for 30 trials a cell in seconds on two cores.
VideoGeometry default_tune_geometry();

enum class SearchMethod { bayes, random };
std::string to_string(SearchMethod method);  // "bo", "random"

struct TuneOptions {
  VideoGeometry geometry = default_tune_geometry();
  // The LUT's taus are converted for this geometry (tune_space.h); unset: the tuning geometry.
  std::optional<VideoGeometry> lut_geometry;
  SceneKind scene = SceneKind::physics;
  std::uint64_t scene_seed = 1;
  std::vector<MotionRegime> regimes = {MotionRegime::low, MotionRegime::mid, MotionRegime::high};
  std::vector<TuneMode> modes = {TuneMode::static_ratio, TuneMode::dynamic_threshold};
  int trials = 30;          // Bayesian-optimisation trials per cell, [1, 10000]
  int random_trials = 0;    // random-search baseline trials per cell, [0, 100000]
  std::uint64_t seed = 1;   // optimiser seed (the scene has its own)
  int initial_points = 0;   // Latin-hypercube points before the GP; 0 = automatic
  double target_sparsity = 0.80;
  double penalty = 10.0;
  int threads = 0;
  Device device = Device::cpu;  // cuda: evaluate on the CUDA engine (ObjectiveOptions::device)
  std::vector<BoundOverride> bounds;
};

// Throws Error naming the field and its allowed range (including every bound, for every mode).
void validate(const TuneOptions& options);

// The objective of one regime under the tuner's options (geometry, scene, target, penalty, threads).
ObjectiveOptions objective_options(const TuneOptions& options, MotionRegime regime);

struct TrialRecord {
  MotionRegime regime = MotionRegime::mid;
  TuneMode mode = TuneMode::static_ratio;
  SearchMethod method = SearchMethod::bayes;
  int trial = 0;            // 1-based within the cell and method
  TunedParams params;
  Evaluation evaluation;
  double suggest_seconds = 0.0;  // time the optimiser took to propose the point
};

struct CellResult {
  MotionRegime regime = MotionRegime::mid;
  TuneMode mode = TuneMode::static_ratio;
  TrialRecord best_bayes;                 // the best Bayesian-optimisation trial
  std::optional<TrialRecord> best_random; // the best random-search trial, when it ran
  double seconds = 0.0;                   // Bayesian optimisation only (evaluations + proposals)
};

struct TuneResult {
  Lut lut;  // one row per tuned (regime, LUT mode) cell, from its best BO trial
  std::vector<CellResult> cells;
  std::vector<TrialRecord> trials;  // every trial, in the order run
  double scene_seconds = 0.0;       // building scenes and dense outputs
  double bayes_seconds = 0.0;       // all Bayesian-optimisation cells
  double random_seconds = 0.0;      // all random-search trials
};

struct TuneProgress {
  enum class Stage { scene, trial };
  Stage stage = Stage::trial;
  int cell = 0;   // 0-based index of the current cell
  int cells = 0;
  MotionRegime regime = MotionRegime::mid;
  TuneMode mode = TuneMode::static_ratio;
  SearchMethod method = SearchMethod::bayes;
  int trials = 0;                       // of this method in this cell
  const TrialRecord* trial = nullptr;   // stage trial: the trial just finished
  double best_loss = 0.0;               // stage trial: best so far of this method in this cell
};

using TuneCallback = std::function<void(const TuneProgress&)>;

// Builds the objective of one regime; the default makes a ProxyObjective (CPU engine).
using ObjectiveFactory = std::function<std::unique_ptr<TuneObjective>(const ObjectiveOptions&)>;

TuneResult tune(const TuneOptions& options, const TuneCallback& progress = {},
                const ObjectiveFactory& make_objective = {});

// The best-so-far curve of one cell and method: curve[i] = min loss of trials 1..i+1.
std::vector<double> best_so_far(const std::vector<TrialRecord>& trials, MotionRegime regime,
                                TuneMode mode, SearchMethod method);

// Writes every trial as CSV (atomically): cell, regime, mode, method, trial, the search
// parameters (gamma, lambda, theta_m, theta_c, dense_adjacent, r_near, r_far, tau_near_rel,
// tau_far_rel; empty where the mode has none), loss, error, sparsity, relative_l2, eval_seconds,
// suggest_seconds. Throws Error naming the path on failure.
void write_trials_csv(const std::string& path, const std::vector<TrialRecord>& trials);

}  // namespace dynamicrad
