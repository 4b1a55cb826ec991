// The tuner end to end: tune() on a tiny geometry (LUT rows, trial records, determinism, progress)
// and the `dynamicrad tune` command (DYNAMICRAD_CLI): the LUT, CSV and PNG it writes, --evaluate,
// --space, --plot, and usage errors for bad bounds, regimes and modes (exit code 2).
#include <gtest/gtest.h>

#include "cli_support.h"
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "dynamicrad/device.h"
#include "dynamicrad/error.h"
#include "dynamicrad/lut.h"
#include "dynamicrad/tune.h"

namespace dynamicrad {
namespace {

namespace fs = std::filesystem;

const char* kTinyFlags =
    "--frames 6 --height 4 --width 8 --heads 2 --head-dim 16 --block 32 --threads 2";

TuneOptions tiny_options() {
  TuneOptions o;
  o.geometry.frames = 6;
  o.geometry.height = 4;
  o.geometry.width = 8;
  o.geometry.heads = 2;
  o.geometry.head_dim = 16;
  o.geometry.block_size = 32;
  o.regimes = {MotionRegime::low, MotionRegime::high};
  o.trials = 7;
  o.initial_points = 5;
  o.random_trials = 3;
  o.threads = 2;
  o.target_sparsity = 0.5;
  return o;
}

TEST(Tune, TinyGridGivesLutRowsTrialsAndIsDeterministic) {
  int scene_calls = 0, trial_calls = 0;
  const TuneResult a = tune(tiny_options(), [&](const TuneProgress& p) {
    if (p.stage == TuneProgress::Stage::scene) ++scene_calls;
    else ++trial_calls;
  });
  EXPECT_EQ(scene_calls, 2);
  EXPECT_EQ(trial_calls, 2 * 2 * (7 + 3));
  ASSERT_EQ(a.lut.entries.size(), 4u);
  EXPECT_NO_THROW(a.lut.find(MotionRegime::high, SelectionMode::dynamic_threshold));
  ASSERT_EQ(a.cells.size(), 4u);
  for (const CellResult& c : a.cells) {
    const std::vector<double> curve = best_so_far(a.trials, c.regime, c.mode, SearchMethod::bayes);
    ASSERT_EQ(curve.size(), 7u);
    EXPECT_DOUBLE_EQ(curve.back(), c.best_bayes.evaluation.loss);
    for (std::size_t i = 1; i < curve.size(); ++i) EXPECT_LE(curve[i], curve[i - 1]);
    ASSERT_TRUE(c.best_random.has_value());
  }
  // A caller-supplied objective (another backend) is used as given; here the same CPU objective.
  int built = 0;
  const TuneResult b = tune(tiny_options(), {}, [&](const ObjectiveOptions& options) {
    ++built;
    return std::make_unique<ProxyObjective>(options);
  });
  EXPECT_EQ(built, 2);
  ASSERT_EQ(a.trials.size(), b.trials.size());
  for (std::size_t i = 0; i < a.trials.size(); ++i) {
    EXPECT_EQ(a.trials[i].evaluation.loss, b.trials[i].evaluation.loss) << "trial " << i;
  }
  EXPECT_EQ(lut_to_json(a.lut), lut_to_json(b.lut));
}

using Result = testing::CliResult;
using testing::read_text;

class TuneCli : public testing::CliTest {};

TEST_F(TuneCli, WritesAValidLutCsvAndPng) {
  const Result r = run(std::string("tune ") + kTinyFlags +
                       " --trials 6 --initial 5 --random-baseline 2 --regimes mid,high --out-dir out");
  ASSERT_EQ(r.code, 0) << r.err;
  const Lut lut = load_lut((dir_ / "out" / "lut.json").string());
  EXPECT_EQ(lut.entries.size(), 4u);
  const std::string csv = read_text(dir_ / "out" / "trials.csv");
  std::istringstream lines(csv);
  std::string header, line;
  std::getline(lines, header);
  EXPECT_EQ(header.rfind("cell,regime,mode,method,trial,gamma", 0), 0u);
  int rows = 0;
  while (std::getline(lines, line)) ++rows;
  EXPECT_EQ(rows, 2 * 2 * (6 + 2));
  EXPECT_EQ(read_text(dir_ / "out" / "convergence.png").substr(0, 4), "\x89PNG");
  EXPECT_NE(r.out.find("high"), std::string::npos);
  EXPECT_NE(r.err.find("building the proxy scene"), std::string::npos);

  // The CSV redraws as an averaged picture.
  const Result plot = run("tune --plot out/trials.csv,out/trials.csv --png mean.png");
  ASSERT_EQ(plot.code, 0) << plot.err;
  EXPECT_EQ(read_text(dir_ / "mean.png").substr(0, 4), "\x89PNG");
}

TEST_F(TuneCli, EvaluatesRequestsAsJson) {
  const std::string request =
      R"({"regime": "high", "mode": "static-ratio", "params": {"gamma": 1.0, "lambda": 1.0, )"
      R"("theta_m": 0.5, "theta_c": 0.3, "dense_adjacent": false, "r_near": 0.3, "r_far": 0.2}})";
  const Result r = run(std::string("tune ") + kTinyFlags + " --evaluate -", request + "\n" + request + "\n");
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string first, second;
  std::getline(lines, first);
  std::getline(lines, second);
  EXPECT_EQ(first.rfind("{\"loss\":", 0), 0u) << r.out;
  EXPECT_NE(first.find("\"sparsity\":"), std::string::npos);
  EXPECT_EQ(first.substr(0, first.find(",\"seconds\"")), second.substr(0, second.find(",\"seconds\"")));

  const Result space = run("tune --space --modes dynamic-threshold");
  ASSERT_EQ(space.code, 0) << space.err;
  EXPECT_NE(space.out.find("tau_near_rel"), std::string::npos);

  const Result bad = run(std::string("tune ") + kTinyFlags + " --evaluate '{\"regime\": \"warp\"}'");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("regime"), std::string::npos) << bad.err;
}

TEST_F(TuneCli, BadBoundsRegimesAndModesAreUsageErrors) {
  Result r = run("tune --bounds gamma=0.5:40");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("gamma"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(0, 16]"), std::string::npos) << r.err;
  r = run("tune --bounds r_near=0.9:0.1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("r_near"), std::string::npos) << r.err;
  r = run("tune --bounds warp=0:1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("warp"), std::string::npos) << r.err;
  r = run("tune --regimes low,extreme");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("extreme"), std::string::npos) << r.err;
  r = run("tune --modes static-ratio,greedy");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("greedy"), std::string::npos) << r.err;
  r = run("tune --target-sparsity 0.7");
  EXPECT_EQ(r.code, 2);
  r = run("tune --plot missing.csv");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("missing.csv"), std::string::npos) << r.err;
}


TEST_F(TuneCli, TrialsCsvFollowsALinkAndLeavesAnOldTemporaryAlone) {
  fs::create_symlink("real.csv", dir_ / "trials.csv");
  { std::ofstream(dir_ / "trials.csv.tmp") << "mine"; }
  write_trials_csv((dir_ / "trials.csv").string(), {});
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(dir_ / "trials.csv")));
  EXPECT_EQ(read_text(dir_ / "real.csv").rfind("cell,regime,mode", 0), 0u);
  EXPECT_EQ(read_text(dir_ / "trials.csv.tmp"), "mine");
}

TEST_F(TuneCli, CudaInABuildWithoutItIsAUsageErrorBeforeAnyWork) {
  if (built_with_cuda()) GTEST_SKIP() << "this build has CUDA";
  const Result r = run(std::string("tune ") + kTinyFlags + " --device cuda --out-dir out");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--device"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("without CUDA"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("building the proxy scene"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "out"));
}

TEST_F(TuneCli, TargetSparsityIsComparedAsANumber) {
  for (const char* value : {"0.8", "0.80", "0.900", "8.5e-1"}) {
    const Result r = run(std::string("tune --space --target-sparsity ") + value);
    EXPECT_EQ(r.code, 0) << value << ": " << r.err;
  }
  const Result r = run("tune --space --target-sparsity 0.81");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("0.80, 0.85, 0.90"), std::string::npos) << r.err;
}

TEST_F(TuneCli, UnwritableOutputsFailBeforeTheTuning) {
  fs::create_directories(dir_ / "out" / "trials.csv");  // a folder where the CSV goes
  Result r = run(std::string("tune ") + kTinyFlags +
                 " --trials 2 --initial 1 --random-baseline 0 --regimes low --modes static-ratio --out-dir out");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("trials.csv"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("building the proxy scene"), std::string::npos) << r.err;
  // --plot checks its picture before reading the CSVs.
  r = run("tune --plot missing.csv --png no/such/dir/mean.png");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no/such/dir/mean.png"), std::string::npos) << r.err;
}

TEST(Tune, InitialPointsMayNotExceedTheTrials) {
  TuneOptions o = tiny_options();
  o.initial_points = o.trials;
  EXPECT_NO_THROW(validate(o));
  o.initial_points = o.trials + 1;
  try {
    validate(o);
    ADD_FAILURE() << "initial_points = trials + 1 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("initial_points"), std::string::npos) << e.what();
  }
}

TEST(Tune, LutTausAreConvertedForTheLutGeometry) {
  TuneOptions o = tiny_options();
  o.regimes = {MotionRegime::high};
  o.modes = {TuneMode::dynamic_threshold};
  o.trials = 2;
  o.initial_points = 2;
  o.random_trials = 0;
  VideoGeometry lut_geometry = o.geometry;
  lut_geometry.frames = 12;
  lut_geometry.height = 8;
  lut_geometry.width = 16;
  o.lut_geometry = lut_geometry;
  const TuneResult r = tune(o);
  ASSERT_EQ(r.lut.entries.size(), 1u);
  ASSERT_EQ(r.cells.size(), 1u);
  const TunedParams& best = r.cells[0].best_bayes.params;
  const LutEntry there = lut_entry_for(best, MotionRegime::high, lut_geometry);
  const LutEntry here = lut_entry_for(best, MotionRegime::high, o.geometry);
  ASSERT_NE(there.selection.tau_near, here.selection.tau_near);
  EXPECT_DOUBLE_EQ(r.lut.entries[0].selection.tau_near, there.selection.tau_near);
  EXPECT_DOUBLE_EQ(r.lut.entries[0].selection.tau_far, there.selection.tau_far);
}

TEST_F(TuneCli, OutOfRangeIntegersAndNonFiniteNumbersAreUsageErrors) {
  // strtoll saturates at INT64_MAX, inside --seed's range: the overflow itself must be refused.
  Result r = run("tune --space --seed 99999999999999999999");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--seed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("expected an integer"), std::string::npos) << r.err;
  // NaN passes both range comparisons: it must be refused as no number.
  r = run("tune --space --penalty nan");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--penalty = 'nan': expected a number"), std::string::npos) << r.err;
}

TEST_F(TuneCli, InitialPointsAboveTheTrialsNameTheFlag) {
  const Result r = run("tune --space --trials 6 --initial 7");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--initial = 7: allowed range [0, 6]"), std::string::npos) << r.err;
}

TEST_F(TuneCli, ABoundRefusedByValidationNamesTheFlag) {
  const Result r = run("tune --space --bounds gamma=2:1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--bounds: bounds.gamma"), std::string::npos) << r.err;
}

TEST_F(TuneCli, EmptyListItemsAndBlankRequestLinesAreSkipped) {
  Result r = run("tune --space --regimes low,,mid, --modes ,static-ratio");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("r_near"), std::string::npos) << r.out;
  const std::string request =
      R"({"regime": "high", "mode": "static-ratio", "params": {"gamma": 1.0, "lambda": 1.0, )"
      R"("theta_m": 0.5, "theta_c": 0.3, "dense_adjacent": false, "r_near": 0.3, "r_far": 0.2}})";
  r = run(std::string("tune ") + kTinyFlags + " --evaluate -", "\n" + request + "\n\n" + request + "\n");
  EXPECT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  int results = 0;
  while (std::getline(lines, line)) results += line.rfind("{\"loss\":", 0) == 0 ? 1 : 0;
  EXPECT_EQ(results, 2) << r.out;
}

TEST_F(TuneCli, AnUnwritableLutFailsBeforeTheTuning) {
  fs::create_directories(dir_ / "out" / "lut.json");  // a folder where the LUT goes
  const Result r = run(std::string("tune ") + kTinyFlags +
                       " --trials 2 --initial 1 --random-baseline 0 --regimes low --modes static-ratio --out-dir out");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("lut.json"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("building the proxy scene"), std::string::npos) << r.err;
}

TEST_F(TuneCli, RandomLossAtTheSameTrialsIsTheBestOfTheFirstTrials) {
  // 2 BO trials, 4 random ones: the table's "random loss (same trials)" is the best of random
  // trials 1 and 2 (seed 1: trial 3 improves on them, so a later trial would show).
  const Result r = run(std::string("tune ") + kTinyFlags +
                       " --trials 2 --initial 2 --random-baseline 4 --regimes low --modes static-ratio"
                       " --seed 1 --out-dir out");
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream csv(read_text(dir_ / "out" / "trials.csv"));
  std::string line;
  std::getline(csv, line);  // header
  std::vector<double> random_losses;
  while (std::getline(csv, line)) {
    std::vector<std::string> fields;
    std::stringstream row(line);
    std::string field;
    while (std::getline(row, field, ',')) fields.push_back(field);
    ASSERT_GT(fields.size(), 14u) << line;
    if (fields[3] == "random") random_losses.push_back(std::stod(fields[14]));
  }
  ASSERT_EQ(random_losses.size(), 4u);
  const double same = std::min(random_losses[0], random_losses[1]);
  ASSERT_LT(random_losses[2], same) << "the seed no longer tells trial 2 from trial 3";
  char expected[64];
  std::snprintf(expected, sizeof expected, "%.4g", same);
  std::istringstream out(r.out);
  bool found = false;
  while (std::getline(out, line)) {
    std::istringstream words(line);
    std::vector<std::string> w;
    std::string word;
    while (words >> word) w.push_back(word);
    if (w.size() < 6 || w[0] != "low" || w[1] != "static-ratio") continue;
    found = true;
    EXPECT_EQ(w[5], expected) << line;
  }
  EXPECT_TRUE(found) << r.out;
}

}  // namespace
}  // namespace dynamicrad
