// The tuner's proxy task: 3D RoPE (rope.h), the physics scene (scene.h), proxy Q/K/V (proxy.h),
// the objective (objective.h) and the convergence picture (plot.h).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "dynamicrad/objective.h"
#include "dynamicrad/plot.h"
#include "dynamicrad/proxy.h"
#include "dynamicrad/rope.h"
#include "dynamicrad/scene.h"
#include "dynamicrad/synthetic.h"
#include "test_support.h"

namespace dynamicrad {
namespace {

namespace fs = std::filesystem;

VideoGeometry tiny_geometry() {
  VideoGeometry g;
  g.frames = 6;
  g.height = 4;
  g.width = 8;
  g.heads = 2;
  g.head_dim = 16;
  g.block_size = 32;
  return g;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

std::vector<float> random_vector(dr_test::Rng& rng, int n) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = static_cast<float>(rng.normal());
  return v;
}

TEST(Rope, WanBandSplit) {
  const RopeBands b128 = rope_bands(128);
  EXPECT_EQ(b128.time, 44);
  EXPECT_EQ(b128.height, 42);
  EXPECT_EQ(b128.width, 42);
  const RopeBands b64 = rope_bands(64);
  EXPECT_EQ(b64.time + b64.height + b64.width, 64);
  EXPECT_EQ(b64.height, 20);
  EXPECT_DR_ERROR(rope_bands(63), "head_dim");
  EXPECT_DR_ERROR(rope_bands(0), "head_dim");
}

TEST(Rope, PreservesNorms) {
  dr_test::Rng rng(1);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> v = random_vector(rng, 64);
    const double before = dot(v, v);
    apply_rope_3d(v.data(), 64, {rng.uniform(0, 30), rng.uniform(0, 50), rng.uniform(0, 80)});
    EXPECT_NEAR(dot(v, v), before, 1e-4 * before);
  }
}

TEST(Rope, DotProductDependsOnlyOnRelativePosition) {
  dr_test::Rng rng(2);
  const std::vector<float> q = random_vector(rng, 128), k = random_vector(rng, 128);
  auto score = [&](RopePosition pq, RopePosition pk) {
    std::vector<float> a = q, b = k;
    apply_rope_3d(a.data(), 128, pq);
    apply_rope_3d(b.data(), 128, pk);
    return dot(a, b);
  };
  const double base = score({1, 2, 3}, {4, 7, 5});
  EXPECT_NEAR(score({11, 12, 13}, {14, 17, 15}), base, 1e-3);
  EXPECT_NEAR(score({0, 0, 0}, {3, 5, 2}), base, 1e-3);
  // Moving only the key changes the score (the encoding is not trivial).
  EXPECT_GT(std::abs(score({1, 2, 3}, {4, 9, 5}) - base), 1e-2);
}

TEST(Scene, StepFollowsSemiImplicitEulerAwayFromWalls) {
  SceneObject o;
  o.y = 10.0;
  o.x = 20.0;
  o.vy = 0.5;
  o.vx = -1.0;
  o.ay = 0.1;
  o.ax = 0.05;
  o.radius = 2.0;
  const SceneObject n = step_object(o, 40.0, 60.0);
  EXPECT_DOUBLE_EQ(n.vy, 0.6);
  EXPECT_DOUBLE_EQ(n.vx, -0.95);
  EXPECT_DOUBLE_EQ(n.y, 10.6);
  EXPECT_DOUBLE_EQ(n.x, 19.05);
  EXPECT_DOUBLE_EQ(n.ay, 0.1);
}

TEST(Scene, BounceReflectsPositionAndVelocity) {
  SceneObject o;
  o.y = 5.0;
  o.x = 2.5;
  o.vx = -1.0;
  o.radius = 2.0;
  const SceneObject n = step_object(o, 20.0, 20.0);
  // x would be 1.5, under the lower bound 2: reflected to 2.5 with the velocity reversed.
  EXPECT_DOUBLE_EQ(n.x, 2.5);
  EXPECT_DOUBLE_EQ(n.vx, 1.0);
}

TEST(Scene, ObjectsStayInFrameAndScenesAreDeterministic) {
  VideoGeometry g = tiny_geometry();
  g.frames = 200;
  g.height = 12;
  g.width = 20;
  for (MotionRegime regime : {MotionRegime::low, MotionRegime::mid, MotionRegime::high}) {
    PhysicsSceneOptions o = physics_scene_options(regime, 5);
    o.objects = 6;
    const SceneTrajectory path = simulate_scene(g, o);
    ASSERT_EQ(path.objects.size(), 200u);
    for (const auto& frame : path.objects) {
      for (const SceneObject& s : frame) {
        EXPECT_GE(s.y, 0.0);
        EXPECT_LE(s.y, g.height - 1.0);
        EXPECT_GE(s.x, 0.0);
        EXPECT_LE(s.x, g.width - 1.0);
      }
    }
    const SceneTrajectory again = simulate_scene(g, o);
    EXPECT_EQ(again.objects.back().front().x, path.objects.back().front().x);
    EXPECT_EQ(again.camera_x, path.camera_x);
  }
  // Faster regimes move further.
  auto travel = [&](MotionRegime regime) {
    const SceneTrajectory p = simulate_scene(g, physics_scene_options(regime, 5));
    double total = 0.0;
    for (std::size_t t = 1; t < p.objects.size(); ++t) {
      total += std::hypot(p.objects[t][0].x - p.objects[t - 1][0].x, p.objects[t][0].y - p.objects[t - 1][0].y);
    }
    return total;
  };
  EXPECT_LT(travel(MotionRegime::low), travel(MotionRegime::mid));
  EXPECT_LT(travel(MotionRegime::mid), travel(MotionRegime::high));
  PhysicsSceneOptions bad;
  bad.object_speed = 2.0;
  EXPECT_DR_ERROR(simulate_scene(g, bad), "object_speed");
}

TEST(Proxy, PhysicsQkvIsDeterministicAndFinite) {
  const VideoGeometry g = tiny_geometry();
  ProxyOptions o;
  o.regime = MotionRegime::high;
  o.seed = 3;
  const SyntheticQkv a = make_proxy_qkv(g, o), b = make_proxy_qkv(g, o);
  ASSERT_EQ(a.q.shape(), (Shape{1, 192, 2, 16}));
  bool differs = false;
  for (std::int64_t i = 0; i < a.q.shape().elements(); ++i) {
    ASSERT_TRUE(std::isfinite(a.q.get(i)) && std::isfinite(a.k.get(i)) && std::isfinite(a.v.get(i)));
    ASSERT_EQ(a.q.get(i), b.q.get(i));
    ASSERT_EQ(a.v.get(i), b.v.get(i));
  }
  o.seed = 4;
  const SyntheticQkv c = make_proxy_qkv(g, o);
  for (std::int64_t i = 0; i < a.k.shape().elements() && !differs; ++i) differs = a.k.get(i) != c.k.get(i);
  EXPECT_TRUE(differs);
  VideoGeometry odd = g;
  odd.head_dim = 15;
  EXPECT_DR_ERROR(make_proxy_qkv(odd, o), "head_dim");
  EXPECT_DR_ERROR(parse_scene_kind("fluid"), "scene");
}

TEST(Proxy, DriftIsThePapersSyntheticDrift) {
  const VideoGeometry g = tiny_geometry();
  ProxyOptions o;
  o.kind = SceneKind::drift;
  o.regime = MotionRegime::mid;
  o.seed = 9;
  SyntheticOptions s;
  s.drift = regime_drift(MotionRegime::mid);
  s.seed = 9;
  s.grid_spacing = 1.0;  // min(height, width) / 4 for the tiny geometry
  const SyntheticQkv a = make_proxy_qkv(g, o), b = make_synthetic_qkv(g, s);
  for (std::int64_t i = 0; i < a.q.shape().elements(); ++i) ASSERT_EQ(a.q.get(i), b.q.get(i));
}

TEST(Objective, FullLayoutIsExactAndPenaltyIsTheHinge) {
  ObjectiveOptions o;
  o.geometry = tiny_geometry();
  o.regime = MotionRegime::high;
  o.threads = 2;
  const ProxyObjective objective(o);
  const Evaluation dense = objective.evaluate_layout(full_layout(1, 2, 192, 32));
  EXPECT_NEAR(dense.error, 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(dense.sparsity, 0.0);
  EXPECT_NEAR(dense.loss, 10.0 * 0.8, 1e-9);
  EXPECT_DOUBLE_EQ(sparsity_penalty(0.9, 0.8, 10.0), 0.0);
  EXPECT_NEAR(sparsity_penalty(0.75, 0.8, 10.0), 0.5, 1e-12);
  // A layout of the tuned form: loss = error + penalty, deterministic.
  TunedParams p;
  p.mode = TuneMode::dynamic_threshold;
  p.tau_near_rel = 2.0;
  p.tau_far_rel = 2.0;
  const Evaluation e = objective.evaluate(p), again = objective.evaluate(p);
  EXPECT_GT(e.sparsity, 0.0);
  EXPECT_GT(e.error, 0.0);
  EXPECT_NEAR(e.loss, e.error + sparsity_penalty(e.sparsity, 0.8, 10.0), 1e-12);
  EXPECT_EQ(e.loss, again.loss);
  // The double-precision oracle agrees with the fp32 full-layout dense path.
  o.dense = DenseOracle::reference;
  const ProxyObjective reference(o);
  EXPECT_NEAR(reference.evaluate(p).error, e.error, 1e-4 * std::max(1.0, e.error));
  o.target_sparsity = 1.5;
  EXPECT_DR_ERROR(ProxyObjective{o}, "target_sparsity");
}

TEST(Plot, WritesAPngAndRejectsBadInput) {
  const fs::path path = fs::temp_directory_path() / ("dynamicrad_plot_" + std::to_string(::getpid()) + ".png");
  PlotPanel panel;
  panel.title = "high / dynamic-threshold";
  panel.series.push_back({"BO", kBayesColour, {0.5, 0.2, 0.2, 0.05}});
  panel.series.push_back({"random", kRandomColour, {0.6, 0.6, 0.3, 0.3, 0.1}});
  write_convergence_png(path.string(), {panel, panel, panel});
  std::ifstream in(path, std::ios::binary);
  char signature[8] = {};
  in.read(signature, 8);
  EXPECT_EQ(std::memcmp(signature, "\x89PNG\r\n\x1a\n", 8), 0);
  fs::remove(path);
  EXPECT_DR_ERROR(write_convergence_png(path.string(), {}), "panels");
  panel.series[0].y[1] = NAN;
  EXPECT_DR_ERROR(write_convergence_png(path.string(), {panel}), "BO");
  ConvergencePlotOptions bad;
  bad.columns = 0;
  EXPECT_DR_ERROR(write_convergence_png(path.string(), {}, bad), "panels", "columns");
}

TEST(Plot, LowerCaseTitlesDrawTheCapitalGlyphs) {
  // The font has capitals only; lower case is drawn with them, z included.
  auto bytes = [](const std::string& title) {
    const fs::path path =
        fs::temp_directory_path() / ("dynamicrad_plot_case_" + std::to_string(::getpid()) + ".png");
    PlotPanel panel;
    panel.title = title;
    panel.series.push_back({"BO", kBayesColour, {0.5, 0.2, 0.2, 0.05}});
    write_convergence_png(path.string(), {panel});
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    fs::remove(path);
    return text.str();
  };
  EXPECT_EQ(bytes("az"), bytes("AZ"));
  EXPECT_NE(bytes("AZ"), bytes("AY"));
}

}  // namespace
}  // namespace dynamicrad
