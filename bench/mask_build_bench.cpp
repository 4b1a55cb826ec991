// Mask building on one thread for full-size model geometries: build_radial_prior, pool_blocks and
// select_blocks (both selection modes) on synthetic bf16 Q/K of the motion proxy.
//
// The library's mask build is single-threaded; only the synthetic data generation (reported apart,
// not part of the mask build) uses several threads. Each step's time is the median of --repeats
// runs. Targets: a whole mask build under 1 s for wan2.1-14b-720p (75,600 tokens, 40 heads, block
// 128), and a layout at about 15% density under 16 MB (the last row of each table: static-ratio
// with its ratio bisected to about 85% sparsity).
//
// usage: mask_build_bench [--repeats N] [--regime low|mid|high] [--preset NAME]...
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "dynamicrad/error.h"
#include "dynamicrad/geometry.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/lut.h"
#include "dynamicrad/motion.h"
#include "dynamicrad/presets.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"
#include "dynamicrad/synthetic.h"

namespace {

using namespace dynamicrad;

// Sparsity at which the layout size target (< 16 MB for wan2.1-14b-720p) is stated.
constexpr double kSizeTargetSparsity = 0.85;

struct BenchOptions {
  int repeats = 3;
  MotionRegime regime = MotionRegime::mid;
  std::vector<std::string> presets;
};

bool parse_options(int argc, char** argv, BenchOptions* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || i + 1 >= argc) return false;
    const std::string value = argv[++i];
    if (flag == "--repeats") {
      char* end = nullptr;
      const long n = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || n < 1) return false;
      o->repeats = static_cast<int>(n);
    } else if (flag == "--regime") {
      o->regime = parse_motion_regime(value, "--regime");
    } else if (flag == "--preset") {
      preset_geometry(value);  // throws, listing the known names
      o->presets.push_back(value);
    } else {
      return false;
    }
  }
  if (o->presets.empty()) o->presets = {"wan2.1-14b-720p", "hunyuan-720p"};
  return true;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Median time of `repeats` calls; `fn` keeps its last result itself.
double median_time(int repeats, const std::function<void()>& fn) {
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(seconds_since(start));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void bench_preset(const std::string& name, const BenchOptions& o) {
  const VideoGeometry g = preset_geometry(name);
  SyntheticOptions synthetic;
  synthetic.drift = regime_drift(o.regime);
  synthetic.dtype = DType::bf16;
  auto start = std::chrono::steady_clock::now();
  const SyntheticQkv qkv = make_synthetic_qkv(g, synthetic);
  const double synthetic_s = seconds_since(start);
  std::printf(
      "\n%s: %lld tokens (%lld frames x %lld x %lld + %lld text), %lld heads x %lld, block "
      "%d; synthetic bf16 Q/K/V %.2f s (excluded)\n",
      name.c_str(), static_cast<long long>(total_tokens(g)), static_cast<long long>(g.frames),
      static_cast<long long>(g.height), static_cast<long long>(g.width),
      static_cast<long long>(g.text_tokens), static_cast<long long>(g.heads),
      static_cast<long long>(g.head_dim), g.block_size, synthetic_s);
  std::printf("  %-18s %10s %10s %10s %10s %10s %10s %10s\n", "mode", "prior ms", "pool ms",
              "select ms", "total ms", "prior dens", "sparsity", "layout MB");
  std::printf("  %s\n", std::string(18 + 7 * 11, '-').c_str());

  const Lut lut = default_lut();
  auto print_row = [](const std::string& label, double prior_s, double pool_s, double select_s,
                      const RadialPrior& prior, const BlockLayout& layout) {
    std::printf("  %-18s %10.1f %10.1f %10.1f %10.1f %9.2f%% %9.2f%% %10.2f\n", label.c_str(),
                prior_s * 1e3, pool_s * 1e3, select_s * 1e3, (prior_s + pool_s + select_s) * 1e3,
                100.0 * prior.density(), 100.0 * layout_stats(layout, nullptr).sparsity,
                static_cast<double>(layout.bytes()) / 1e6);
  };
  RadialPrior prior;
  PooledBlocks pooled;
  BlockLayout layout;
  double prior_s = 0.0;
  double pool_s = 0.0;
  for (SelectionMode mode : {SelectionMode::static_ratio, SelectionMode::dynamic_threshold}) {
    const LutEntry& row = lut.find(o.regime, mode);
    prior_s = median_time(o.repeats, [&] { prior = build_radial_prior(g, row.prior); });
    pool_s = median_time(o.repeats, [&] { pooled = pool_blocks(qkv.q.view(), qkv.k.view(), g); });
    const double select_s =
        median_time(o.repeats, [&] { layout = select_blocks(prior, pooled, row.selection); });
    print_row(to_string(mode), prior_s, pool_s, select_s, prior, layout);
  }

  // The size target is stated at about 15% density: static-ratio on the static-ratio row's prior
  // with r_near = r_far = r, r bisected to the sparsity closest to 85% (not timed while searching).
  const RadialPriorParams& static_prior = lut.find(o.regime, SelectionMode::static_ratio).prior;
  prior_s = median_time(o.repeats, [&] { prior = build_radial_prior(g, static_prior); });
  SelectionParams params;
  params.mode = SelectionMode::static_ratio;
  double lo = 0.0;
  double hi = 1.0;
  for (int i = 0; i < 12; ++i) {
    params.r_near = params.r_far = 0.5 * (lo + hi);
    const double sparsity = layout_stats(select_blocks(prior, pooled, params), nullptr).sparsity;
    (sparsity > kSizeTargetSparsity ? lo : hi) = params.r_near;
  }
  params.r_near = params.r_far = lo;
  const double select_s =
      median_time(o.repeats, [&] { layout = select_blocks(prior, pooled, params); });
  char label[32];
  std::snprintf(label, sizeof label, "static r=%.3f", lo);
  print_row(label, prior_s, pool_s, select_s, prior, layout);
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions o;
  try {
    if (!parse_options(argc, argv, &o)) {
      std::fprintf(
          stderr,
          "usage: mask_build_bench [--repeats N] [--regime low|mid|high] [--preset NAME]...\n");
      return 2;
    }
    std::printf(
        "mask_build_bench: one thread, regime %s (built-in LUT rows), median of %d runs "
        "per step\n",
        to_string(o.regime).c_str(), o.repeats);
    for (const std::string& name : o.presets) bench_preset(name, o);
    std::printf(
        "\nlayout MB = bytes of the CSR index arrays for every head (1 MB = 10^6 bytes).\n");
  } catch (const Error& e) {
    std::fprintf(stderr, "mask_build_bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
