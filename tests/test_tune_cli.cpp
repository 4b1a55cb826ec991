// The tuner end to end: tune() on a tiny geometry (LUT rows, trial records, determinism, progress)
// and the `dynamicrad tune` command (DYNAMICRAD_CLI): the LUT, CSV and PNG it writes, --evaluate,
// --space, --plot, and usage errors for bad bounds, regimes and modes (exit code 2).
#include <gtest/gtest.h>

#include "cli_support.h"
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "dynamicrad/device.h"
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

}  // namespace
}  // namespace dynamicrad
