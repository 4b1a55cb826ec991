// GPU check of the tuner's objective on the CUDA engine (ObjectiveOptions::device = cuda) against
// the same objective on the CPU engine, on small proxy scenes: batch 1 and 2, block 64 and 128,
// head_dim 64 and 128, a text prefix, the three tuned modes.
//   * the CUDA objective's sparsity(params) is the block sparsity of its own layout_for(params);
//   * its layouts are the CPU's up to the bf16 rounding of the scene (sparsity within 0.03);
//   * on one and the same layout, its error (MSE / var(dense)) and relative L2 are the CPU's within
//     the bf16 rounding of Q, K, V and of both outputs;
//   * on the full layout its error is bf16 rounding only.
// Not registered with CTest (CI has no GPU): scripts/device/gpu_checks.sh runs it. Exits 1 when a
// check fails.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "dynamicrad/geometry.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/objective.h"
#include "dynamicrad/tune_space.h"
#include "gpu_support.h"

using namespace dynamicrad;

namespace {

struct Case {
  const char* name;
  VideoGeometry geometry;
};

std::vector<Case> cases() {
  VideoGeometry a;
  a.batch = 2;
  a.heads = 2;
  a.head_dim = 64;
  a.frames = 6;
  a.height = 8;
  a.width = 10;  // 480 tokens: the last block of 64 is partial
  a.block_size = 64;
  VideoGeometry b;
  b.heads = 3;
  b.head_dim = 128;
  b.frames = 12;
  b.height = 12;
  b.width = 14;
  b.text_tokens = 40;
  b.text_placement = TextPlacement::prefix;
  b.block_size = 128;
  VideoGeometry c = b;
  c.batch = 2;
  c.text_tokens = 0;
  c.text_placement = TextPlacement::none;
  c.order = TokenOrder::tiled3d;
  return {{"batch 2, block 64, head_dim 64", a}, {"text prefix, block 128, head_dim 128", b},
          {"batch 2, tiled3d, block 128", c}};
}

std::vector<TunedParams> params_set() {
  TunedParams s;  // static-ratio
  s.prior.gamma = 1.0;
  s.prior.lambda = 1.0;
  s.prior.first_frame_sink = false;
  s.r_near = 0.4;
  s.r_far = 0.1;
  TunedParams d = s;
  d.mode = TuneMode::dynamic_threshold;
  d.tau_near_rel = 2.0;
  d.tau_far_rel = 3.0;
  TunedParams r = s;
  r.mode = TuneMode::radial_prior;
  return {s, d, r};
}

// |got - want| <= rel * |want| + abs
bool near(double got, double want, double rel, double abs) {
  return std::fabs(got - want) <= rel * std::fabs(want) + abs;
}

}  // namespace

int main(int argc, char** argv) {
  gpu_test::CommandLine cl;
  if (!gpu_test::start_program(argc, argv, false, "", cl)) return 2;
  int failures = 0, checks = 0;
  auto check = [&](bool ok, const std::string& what) {
    ++checks;
    if (!ok) ++failures;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    std::fflush(stdout);
  };
  for (const Case& c : cases()) {
    std::string note;
    const bool ran = gpu_test::run_noting_exception(
        [&] {
          ObjectiveOptions options;
          options.geometry = c.geometry;
          options.regime = MotionRegime::high;
          options.dense = DenseOracle::reference;
          ProxyObjective cpu(options);
          options.device = Device::cuda;
          ProxyObjective gpu(options);
          const BlockLayout full =
              full_layout(c.geometry.batch, c.geometry.heads, total_tokens(c.geometry), c.geometry.block_size);
          const Evaluation dense = gpu.evaluate_layout(full);
          check(dense.sparsity == 0.0 && dense.error < 1e-4 && dense.relative_l2 < 1e-2,
                std::string(c.name) + ": full layout: sparsity " + std::to_string(dense.sparsity) + ", error " +
                    std::to_string(dense.error) + ", rel L2 " + std::to_string(dense.relative_l2) +
                    " (bf16 rounding only)");
          for (const TunedParams& p : params_set()) {
            const std::string what = std::string(c.name) + ", " + to_string(p.mode);
            const BlockLayout layout = gpu.layout_for(p);
            const double own = layout_stats(layout, nullptr).sparsity;
            const double cpu_sparsity = layout_stats(cpu.layout_for(p), nullptr).sparsity;
            check(gpu.sparsity(p) == own, what + ": sparsity() " + std::to_string(gpu.sparsity(p)) +
                                              " is its layout's " + std::to_string(own));
            check(std::fabs(own - cpu_sparsity) <= 0.03 && own > 0.05,
                  what + ": sparsity " + std::to_string(own) + " vs the CPU's " + std::to_string(cpu_sparsity));
            const Evaluation g = gpu.evaluate_layout(layout);
            const Evaluation h = cpu.evaluate_layout(layout);
            check(g.sparsity == h.sparsity && near(g.error, h.error, 0.05, 1e-4) &&
                      near(g.relative_l2, h.relative_l2, 0.03, 2e-3) && h.error > 5e-4,
                  what + ": same layout: error " + std::to_string(g.error) + " vs " + std::to_string(h.error) +
                      ", rel L2 " + std::to_string(g.relative_l2) + " vs " + std::to_string(h.relative_l2));
            const Evaluation e = gpu.evaluate(p);
            check(e.sparsity == own && e.error == g.error && e.relative_l2 == g.relative_l2,
                  what + ": evaluate(params) is evaluate_layout(layout_for(params))");
          }
        },
        note);
    if (!ran) check(false, std::string(c.name) + ": " + note);
  }
  std::printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
