// Checks the GPU mask builder against the CPU engine (pool_blocks + select_blocks): identical
// layouts on random geometries (odd sizes, text tokens, tiled order, batch 2, several heads, every
// block size, f32 / f16 / bf16, both modes), exact score ties, batch 2 with a pooled prefix (and a
// NaN in it), the NaN / Inf report and a K dtype that differs from Q's, then times a full
// Wan2.1-14B 720p layer (40 heads) and a HunyuanVideo 720p layer in both modes (skipped with
// --no-timing). Prints a table and a closing "N passed, M failed" line; exits 1 on any mismatch.
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

SelectionParams selection(SelectionMode mode, double r_near, double r_far, double tau_near, double tau_far) {
  SelectionParams sp;
  sp.mode = mode;
  sp.r_near = r_near;
  sp.r_far = r_far;
  sp.tau_near = tau_near;
  sp.tau_far = tau_far;
  return sp;
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

  // Exact ties: K is one vector for every token, so all candidates of a row score the same. Static-
  // ratio keeps the lowest columns of a tie; with full blocks, dynamic-threshold gives every
  // candidate the mass 1 / n of its row, so a tau of 1 / n (exact for n a power of two) keeps it.
  {
    VideoGeometry g;
    g.batch = 2;
    g.heads = 2;
    g.frames = 8;
    g.height = 8;
    g.width = 16;
    g.block_size = 64;
    SyntheticOptions so;
    so.dtype = DType::bf16;
    SyntheticQkv qkv = make_synthetic_qkv(g, so);
    for (std::int64_t i = 0; i < qkv.k.shape().elements(); ++i) qkv.k.set(i, qkv.k.get(i % g.head_dim));
    DeviceTensor q(qkv.q), k(qkv.k);
    const PooledBlocks pooled = pool_blocks(qkv.q.view(), qkv.k.view(), g);
    for (const bool sink : {false, true}) {
      RadialPriorParams pp;
      pp.first_frame_sink = sink;
      const RadialPrior prior = build_radial_prior(g, pp);
      CudaMaskBuilder builder(prior, g.batch, g.heads, g.head_dim);
      std::vector<SelectionParams> params;
      for (const double r : {0.25, 0.5, 0.75}) params.push_back(selection(SelectionMode::static_ratio, r, r / 2, 0, 0));
      for (const double tau : {1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32}) {
        params.push_back(selection(SelectionMode::dynamic_threshold, 0, 0, tau, tau));
      }
      for (const SelectionParams& sp : params) {
        builder.build(q.view, k.view, sp, nullptr);
        std::string why;
        const bool ok = same_layout(builder.download(nullptr), select_blocks(prior, pooled, sp), why);
        ++cases;
        failures += ok ? 0 : 1;
        std::printf("ties, sink %d, %s r %.3f/%.3f tau %.4f: %s\n", sink ? 1 : 0, to_string(sp.mode).c_str(),
                    sp.r_near, sp.r_far, sp.tau_near, ok ? "identical" : ("MISMATCH: " + why).c_str());
      }
    }
  }

  // Batch 2 with the first blocks' means adopted from a pooled prefix (as the rotary kernel's pooled
  // output hands them over): the layout of pooling everything. The builder first runs on other
  // inputs, so a prefix mean left unadopted shows.
  {
    VideoGeometry g;
    g.batch = 2;
    g.heads = 3;
    g.frames = 5;
    g.height = 8;
    g.width = 10;
    g.block_size = 64;
    const RadialPrior prior = build_radial_prior(g, {});
    SyntheticOptions so;
    so.dtype = DType::bf16;
    so.drift = 0.3;
    const SyntheticQkv qkv = make_synthetic_qkv(g, so);
    so.seed = 99;
    const SyntheticQkv other = make_synthetic_qkv(g, so);
    DeviceTensor q(qkv.q), k(qkv.k), q_other(other.q), k_other(other.k);
    const PooledBlocks pooled = pool_blocks(qkv.q.view(), qkv.k.view(), g);
    constexpr std::int64_t kPrefix = 3;  // video blocks: their scores decide (text blocks are forced)
    std::vector<float> prefix_q, prefix_k;
    for (std::int64_t bh = 0; bh < g.batch * g.heads; ++bh) {
      const auto first = static_cast<std::ptrdiff_t>(bh * pooled.blocks * g.head_dim);
      const auto last = first + static_cast<std::ptrdiff_t>(kPrefix * g.head_dim);
      prefix_q.insert(prefix_q.end(), pooled.q.begin() + first, pooled.q.begin() + last);
      prefix_k.insert(prefix_k.end(), pooled.k.begin() + first, pooled.k.begin() + last);
    }
    gpu_test::DeviceBuffer dq(prefix_q.size() * sizeof(float)), dk(prefix_k.size() * sizeof(float));
    check(cudaMemcpy(dq.ptr, prefix_q.data(), prefix_q.size() * sizeof(float), cudaMemcpyHostToDevice), "copy");
    check(cudaMemcpy(dk.ptr, prefix_k.data(), prefix_k.size() * sizeof(float), cudaMemcpyHostToDevice), "copy");
    const PooledPrefix prefix{static_cast<const float*>(dq.ptr), static_cast<const float*>(dk.ptr), kPrefix,
                              g.block_size};
    CudaMaskBuilder builder(prior, g.batch, g.heads, g.head_dim);
    for (SelectionMode mode : {SelectionMode::static_ratio, SelectionMode::dynamic_threshold}) {
      const SelectionParams sp = selection(mode, 0.4, 0.2, 0.02, 0.03);
      builder.build(q_other.view, k_other.view, sp, nullptr);
      builder.build(q.view, k.view, sp, nullptr, prefix);
      std::string why;
      const bool ok = same_layout(builder.download(nullptr), select_blocks(prior, pooled, sp), why);
      ++cases;
      failures += ok ? 0 : 1;
      std::printf("batch 2, pooled prefix of %lld blocks, %s: %s\n", static_cast<long long>(kPrefix),
                  to_string(mode).c_str(), ok ? "identical" : ("MISMATCH: " + why).c_str());
    }
    // A NaN among the adopted means is reported like one in Q.
    prefix_q[5] = std::numeric_limits<float>::quiet_NaN();
    check(cudaMemcpy(dq.ptr, prefix_q.data(), prefix_q.size() * sizeof(float), cudaMemcpyHostToDevice), "copy");
    builder.build(q.view, k.view, SelectionParams{}, nullptr, prefix);
    const std::string nan_err = gpu_test::expect_error("q", [&] { builder.download(nullptr); });
    ++cases;
    failures += nan_err.empty() ? 0 : 1;
    std::printf("NaN in the pooled prefix: %s\n",
                nan_err.empty() ? "reported, naming q" : ("MISMATCH: " + nan_err).c_str());
    // K in another dtype than Q is refused, naming k.
    const HostTensor k16 = gpu_test::converted(qkv.k, DType::f16);
    DeviceTensor k_f16(k16);
    const std::string err =
        gpu_test::expect_error("k", [&] { builder.build(q.view, k_f16.view, SelectionParams{}, nullptr); });
    ++cases;
    failures += err.empty() ? 0 : 1;
    std::printf("k in f16 with q in bf16: %s\n", err.empty() ? "refused, naming k" : ("MISMATCH: " + err).c_str());
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
      const SelectionParams sp = selection(mode, 0.3, 0.15, 0.005, 0.0075);
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
