// Checks the GPU mask builder against the CPU engine (pool_blocks + select_blocks): identical
// layouts on random geometries (odd sizes, text tokens, tiled order, batch 2, several heads, every
// block size, f32 / f16 / bf16, both modes), the NaN / Inf report, then times a full Wan2.1-14B 720p
// layer (40 heads) and a HunyuanVideo 720p layer in both modes (skipped with --no-timing). Prints a
// table and a closing "N passed, M failed" line; exits 1 on any mismatch.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "dynamicrad/cuda_mask.h"
#include "dynamicrad/error.h"
#include "dynamicrad/presets.h"
#include "dynamicrad/synthetic.h"
#include "gpu_support.h"

using namespace dynamicrad;

namespace {

using gpu_test::check;

// A device copy of a host tensor, freed on scope exit.
struct DeviceTensor {
  gpu_test::DeviceBuffer buffer;
  ConstTensor view;
  explicit DeviceTensor(const HostTensor& host)
      : buffer(gpu_test::bytes_of(host)), view{buffer.ptr, host.dtype(), host.shape()} {
    gpu_test::upload(buffer.ptr, host, "cudaMemcpy");
  }
};

bool same_layout(const BlockLayout& a, const BlockLayout& b, std::string& why) {
  if (a.row_offsets != b.row_offsets) {
    for (std::size_t r = 0; r + 1 < std::min(a.row_offsets.size(), b.row_offsets.size()); ++r) {
      if (a.row_offsets[r + 1] - a.row_offsets[r] != b.row_offsets[r + 1] - b.row_offsets[r]) {
        why = "row " + std::to_string(r) + " keeps " + std::to_string(a.row_offsets[r + 1] - a.row_offsets[r]) +
              " blocks on the GPU, " + std::to_string(b.row_offsets[r + 1] - b.row_offsets[r]) + " on the CPU";
        return false;
      }
    }
    why = "row_offsets differ";
    return false;
  }
  if (a.col_indices != b.col_indices) {
    why = "col_indices differ";
    return false;
  }
  return true;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const bool timing = !(argc > 1 && std::string(argv[1]) == "--no-timing");
  int failures = 0, cases = 0;
  std::mt19937_64 rng(7);
  const auto pick = [&](int lo, int hi) { return static_cast<int>(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  std::printf("%-70s %-18s %-6s %9s %s\n", "geometry", "mode", "dtype", "sparsity", "result");
  for (int trial = 0; trial < 36; ++trial) {
    VideoGeometry g;
    g.batch = pick(1, 2);
    g.heads = pick(1, 3);
    // 200 and 264: the scoring kernels for head_dim <= 256 and <= 512 (32 and 64 query values a lane)
    g.head_dim = std::vector<int>{64, 128, 80, 24, 200, 264}[static_cast<std::size_t>(pick(0, 5))];
    g.frames = pick(1, 9);
    g.height = pick(3, 24);
    g.width = pick(3, 30);
    g.block_size = std::vector<int>{32, 64, 128}[static_cast<std::size_t>(pick(0, 2))];
    g.order = pick(0, 1) ? TokenOrder::tiled3d : TokenOrder::raster;
    if (pick(0, 2) == 0) {
      g.text_tokens = pick(1, 70);
      g.text_placement = pick(0, 1) ? TextPlacement::prefix : TextPlacement::suffix;
    }
    const DType dtype = std::vector<DType>{DType::f32, DType::f16, DType::bf16}[static_cast<std::size_t>(trial % 3)];
    RadialPriorParams pp;
    pp.gamma = std::uniform_real_distribution<double>(0.3, 2.0)(rng);
    pp.lambda = std::uniform_real_distribution<double>(0.25, 2.0)(rng);
    pp.dense_adjacent = pick(0, 1) == 1;
    const RadialPrior prior = build_radial_prior(g, pp);
    SyntheticOptions so;
    so.drift = std::uniform_real_distribution<double>(0.02, 0.5)(rng);
    so.seed = static_cast<std::uint64_t>(trial + 1);
    so.dtype = dtype;
    const SyntheticQkv qkv = make_synthetic_qkv(g, so);
    DeviceTensor q(qkv.q), k(qkv.k);
    CudaMaskBuilder builder(prior, g.batch, g.heads, g.head_dim);
    const PooledBlocks pooled = pool_blocks(qkv.q.view(), qkv.k.view(), g);
    for (SelectionMode mode : {SelectionMode::static_ratio, SelectionMode::dynamic_threshold}) {
      SelectionParams sp;
      sp.mode = mode;
      sp.r_near = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
      sp.r_far = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
      sp.tau_near = std::uniform_real_distribution<double>(0.0, 0.05)(rng);
      sp.tau_far = std::uniform_real_distribution<double>(0.0, 0.05)(rng);
      const BlockLayout cpu = select_blocks(prior, pooled, sp);
      builder.build(q.view, k.view, sp, nullptr);
      const BlockLayout gpu = builder.download(nullptr);
      std::string why;
      bool ok = same_layout(gpu, cpu, why);
      if (ok && builder.kept_blocks(nullptr) != cpu.kept()) {
        ok = false;
        why = "kept_blocks() = " + std::to_string(builder.kept_blocks(nullptr)) + ", layout keeps " + std::to_string(cpu.kept());
      }
      ++cases;
      failures += ok ? 0 : 1;
      char name[128];
      std::snprintf(name, sizeof name, "b%lld h%lld d%lld %lldx%lldx%lld text %lld %s blk %d", (long long)g.batch,
                    (long long)g.heads, (long long)g.head_dim, (long long)g.frames, (long long)g.height,
                    (long long)g.width, (long long)g.text_tokens, to_string(g.order).c_str(), g.block_size);
      std::printf("%-70s %-18s %-6s %8.2f%% %s\n", name, to_string(mode).c_str(), to_string(dtype).c_str(),
                  100.0 * layout_stats(cpu, nullptr).sparsity, ok ? "identical" : ("MISMATCH: " + why).c_str());
    }
  }

  // NaN in K must be reported, naming k.
  {
    VideoGeometry g;
    g.frames = 3;
    g.height = 8;
    g.width = 8;
    g.block_size = 64;
    SyntheticQkv qkv = make_synthetic_qkv(g, SyntheticOptions{});
    qkv.k.set(100, std::numeric_limits<float>::quiet_NaN());
    DeviceTensor q(qkv.q), k(qkv.k);
    CudaMaskBuilder builder(build_radial_prior(g, {}), 1, 1, g.head_dim);
    builder.build(q.view, k.view, SelectionParams{}, nullptr);
    bool reported = false;
    try {
      builder.download(nullptr);
    } catch (const Error& e) {
      reported = e.field() == "k";
      std::printf("NaN in k reported: %s\n", e.what());
    }
    ++cases;
    failures += reported ? 0 : 1;
    if (!reported) std::printf("MISMATCH: NaN in k was not reported\n");
  }

  // Time per layer at full scale.
  for (const char* preset : {"wan2.1-14b-720p", "hunyuan-720p"}) {
    if (!timing) break;
    const VideoGeometry g = preset_geometry(preset);
    const RadialPrior prior = build_radial_prior(g, {});
    SyntheticOptions so;
    so.dtype = DType::bf16;
    so.drift = 0.4;
    const auto t0 = std::chrono::steady_clock::now();
    const SyntheticQkv qkv = make_synthetic_qkv(g, so);
    std::printf("\n%s: synthetic Q/K/V in %.1f s\n", preset, seconds_since(t0));
    DeviceTensor q(qkv.q), k(qkv.k);
    CudaMaskBuilder builder(prior, g.batch, g.heads, g.head_dim);
    cudaEvent_t start, stop;
    check(cudaEventCreate(&start), "event");
    check(cudaEventCreate(&stop), "event");
    for (SelectionMode mode : {SelectionMode::static_ratio, SelectionMode::dynamic_threshold}) {
      SelectionParams sp;
      sp.mode = mode;
      sp.r_near = 0.3;
      sp.r_far = 0.15;
      sp.tau_near = 0.005;
      sp.tau_far = 0.0075;
      for (int i = 0; i < 3; ++i) builder.build(q.view, k.view, sp, nullptr);
      std::vector<float> times;
      for (int i = 0; i < 20; ++i) {
        check(cudaEventRecord(start), "record");
        builder.build(q.view, k.view, sp, nullptr);
        check(cudaEventRecord(stop), "record");
        check(cudaEventSynchronize(stop), "sync");
        float ms = 0;
        check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
        times.push_back(ms);
      }
      std::sort(times.begin(), times.end());
      const BlockLayout gpu = builder.download(nullptr);
      const PooledBlocks pooled = pool_blocks(qkv.q.view(), qkv.k.view(), g);
      std::string why;
      const bool ok = same_layout(gpu, select_blocks(prior, pooled, sp), why);
      ++cases;
      failures += ok ? 0 : 1;
      std::printf("%s %-18s %d heads: GPU mask build %.3f ms per layer (median of 20), sparsity %.2f%%, %s\n", preset,
                  to_string(mode).c_str(), static_cast<int>(g.heads), times[times.size() / 2],
                  100.0 * layout_stats(gpu, nullptr).sparsity, ok ? "identical to the CPU" : ("MISMATCH: " + why).c_str());
    }
  }
  std::printf("\n%d passed, %d failed\n", cases - failures, failures);
  return failures == 0 ? 0 : 1;
}
