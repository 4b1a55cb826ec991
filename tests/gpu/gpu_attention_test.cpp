// GPU test of the CUDA block-sparse attention against the CPU oracle (attention_reference, double).
//
// Not a CTest test (CI has no GPU): scripts/device/gpu_test.sh builds and runs it on a GPU machine.
// Every case draws fresh random Q/K/V, poisons the outputs with NaN before the run, runs the planned
// backend and compares with the oracle on the same 16-bit inputs:
//   out: relative L2 error ||out - ref|| / ||ref|| (every element must be finite), per-dtype tolerance;
//   lse: max |lse - ref| over finite rows, and -inf exactly where the reference is -inf.
// It also checks the API's errors (each must name the bad field) and CUDA-graph capture of run().
// Prints one table row per case; exits 1 when any case fails.
//
// Usage: gpu_attention_test [--quick] [--seed N] [--kernel all|wgmma|mma-sync]
//   --quick  a few small cases (for compute-sanitizer, which slows kernels down a lot)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "dynamicrad/attention.h"
#include "dynamicrad/cuda_attention.h"
#include "dynamicrad/error.h"
#include "dynamicrad/geometry.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"
#include "dynamicrad/tensor.h"
#include "gpu_support.h"

namespace dr = dynamicrad;

namespace {

using gpu_test::check;
using gpu_test::DeviceBuffer;
using gpu_test::random_tensor;
using gpu_test::Rng;
using gpu_test::shape_of;

// ---- layouts ------------------------------------------------------------------------------------

dr::BlockLayout empty_layout(std::int64_t batch, std::int64_t heads, std::int64_t tokens, int block) {
  dr::BlockLayout l;
  l.batch = batch;
  l.heads = heads;
  l.tokens = tokens;
  l.block_size = block;
  l.blocks = (tokens + block - 1) / block;
  l.row_offsets.assign(static_cast<std::size_t>(l.rows() + 1), 0);
  return l;
}

// Each row keeps each block with probability `density`; a share of rows is forced empty or down to a
// single block (often the short last block), so those paths are always exercised.
dr::BlockLayout random_layout(Rng& rng, std::int64_t batch, std::int64_t heads, std::int64_t tokens, int block,
                              double density) {
  dr::BlockLayout l = empty_layout(batch, heads, tokens, block);
  l.row_offsets.clear();
  l.row_offsets.push_back(0);
  for (std::int64_t r = 0; r < l.rows(); ++r) {
    const double roll = rng.uniform();
    if (roll < 0.08) {
      // empty row
    } else if (roll < 0.18) {
      const std::int64_t c = rng.uniform() < 0.5 ? l.blocks - 1 : rng.integer(0, l.blocks - 1);
      l.col_indices.push_back(static_cast<std::int32_t>(c));
    } else {
      for (std::int64_t c = 0; c < l.blocks; ++c)
        if (rng.uniform() < density) l.col_indices.push_back(static_cast<std::int32_t>(c));
    }
    l.row_offsets.push_back(static_cast<std::int64_t>(l.col_indices.size()));
  }
  return l;
}

// Head 0 keeps nothing, every other head every block. With the head-major schedule (most work
// first) and more full rows than CTAs (2 x 3 heads x 36 blocks: 144 full rows), every CTA's list
// ends with empty rows, so they are written after their neighbours' outputs.
dr::BlockLayout first_head_empty_layout(std::int64_t batch, std::int64_t heads, std::int64_t tokens, int block) {
  dr::BlockLayout l = empty_layout(batch, heads, tokens, block);
  l.row_offsets.clear();
  l.row_offsets.push_back(0);
  for (std::int64_t r = 0; r < l.rows(); ++r) {
    if ((r / l.blocks) % heads != 0) {
      for (std::int64_t c = 0; c < l.blocks; ++c) l.col_indices.push_back(static_cast<std::int32_t>(c));
    }
    l.row_offsets.push_back(static_cast<std::int64_t>(l.col_indices.size()));
  }
  return l;
}

double density(const dr::BlockLayout& l) {
  return static_cast<double>(l.kept()) / static_cast<double>(l.rows() * l.blocks);
}

// ---- cases --------------------------------------------------------------------------------------

enum class LayoutKind { full, random, radial, empty, first_head_empty };

const char* to_cstr(LayoutKind k) {
  switch (k) {
    case LayoutKind::full: return "full";
    case LayoutKind::random: return "random";
    case LayoutKind::radial: return "radial";
    case LayoutKind::empty: return "empty";
    case LayoutKind::first_head_empty: return "head0-empty";
  }
  return "?";
}

struct Case {
  dr::CudaKernel kernel;
  dr::DType dtype;
  int head_dim;
  int block;
  std::int64_t batch;
  std::int64_t heads;
  std::int64_t tokens;  // ignored for radial (the geometry decides)
  LayoutKind layout;
  double density;       // random layouts
  double stddev;        // of Q and K: larger values give peaked softmax rows
  bool lse;
  bool graph;           // run through a captured CUDA graph
  int stages = 0;       // wgmma K/V stages (0: default)
  dr::CudaSchedule schedule = dr::CudaSchedule::head_major;
};

struct Result {
  bool ok = false;
  double rel_l2 = 0.0;
  double lse_err = 0.0;
  double layout_density = 0.0;
  std::int64_t tokens = 0;
  std::int64_t nonfinite = 0;
  std::string backend;
  std::string note;
};

double tolerance(dr::DType dtype) {
  // bf16 keeps 8 significant bits: rounding P and the output each cost ~2^-9 relative, so a correct
  // kernel lands near 3e-3; f16 keeps 11 bits.
  return dtype == dr::DType::bf16 ? 1e-2 : 3e-3;
}
constexpr double kLseTolerance = 2e-3;  // fp32 row sums and max: the LSE is exact to ~1e-5 relative

Result run_case(const Case& c, Rng& rng) {
  Result res;
  dr::BlockLayout layout;
  dr::HostTensor q, k, v;
  const double qk_std = c.stddev;
  if (c.layout == LayoutKind::radial) {
    // A small video: odd frame size, text suffix, the radial prior and static-ratio selection.
    dr::VideoGeometry g;
    g.batch = c.batch;
    g.heads = c.heads;
    g.head_dim = c.head_dim;
    g.frames = 6;
    g.height = 9;
    g.width = 13;
    g.text_tokens = 19;
    g.text_placement = dr::TextPlacement::suffix;
    g.block_size = c.block;
    const dr::Shape s = shape_of(c.batch, dr::total_tokens(g), c.heads, c.head_dim);
    q = random_tensor(rng, c.dtype, s, qk_std);
    k = random_tensor(rng, c.dtype, s, qk_std);
    v = random_tensor(rng, c.dtype, s, 1.0);
    dr::RadialPriorParams prior_params;
    prior_params.gamma = 0.5;
    const dr::RadialPrior prior = dr::build_radial_prior(g, prior_params);
    dr::SelectionParams sel;
    sel.r_near = 0.5;
    sel.r_far = 0.3;
    layout = dr::select_blocks(prior, dr::pool_blocks(q.view(), k.view(), g), sel);
  } else {
    const dr::Shape s = shape_of(c.batch, c.tokens, c.heads, c.head_dim);
    q = random_tensor(rng, c.dtype, s, qk_std);
    k = random_tensor(rng, c.dtype, s, qk_std);
    v = random_tensor(rng, c.dtype, s, 1.0);
    if (c.layout == LayoutKind::full) layout = dr::full_layout(c.batch, c.heads, c.tokens, c.block);
    if (c.layout == LayoutKind::random) layout = random_layout(rng, c.batch, c.heads, c.tokens, c.block, c.density);
    if (c.layout == LayoutKind::empty) layout = empty_layout(c.batch, c.heads, c.tokens, c.block);
    if (c.layout == LayoutKind::first_head_empty) {
      layout = first_head_empty_layout(c.batch, c.heads, c.tokens, c.block);
    }
  }
  const dr::Shape shape = q.shape();
  res.tokens = shape.tokens;
  res.layout_density = density(layout);

  // Oracle.
  const gpu_test::Reference ref = gpu_test::attention_oracle(q, k, v, layout);

  // GPU.
  dr::CudaAttentionOptions options;
  options.dtype = c.dtype;
  options.head_dim = c.head_dim;
  options.kernel = c.kernel;
  options.stages = c.stages;
  options.schedule = c.schedule;
  const auto backend = dr::plan_cuda_attention(layout, options);
  res.backend = backend->name();
  const std::size_t bytes = gpu_test::bytes_of(q);
  const std::size_t lse_bytes = ref.lse.size() * sizeof(float);
  DeviceBuffer dq(bytes), dk(bytes), dv(bytes), dout(bytes), dlse(lse_bytes);
  gpu_test::upload(dq.ptr, q, "copy q");
  gpu_test::upload(dk.ptr, k, "copy k");
  gpu_test::upload(dv.ptr, v, "copy v");
  check(cudaMemset(dout.ptr, 0xFF, bytes), "poison out");  // all-ones bits: NaN in f16, bf16 and f32
  check(cudaMemset(dlse.ptr, 0xFF, lse_bytes), "poison lse");
  dr::AttentionArgs args;
  args.q = dr::ConstTensor{dq.ptr, c.dtype, shape};
  args.k = dr::ConstTensor{dk.ptr, c.dtype, shape};
  args.v = dr::ConstTensor{dv.ptr, c.dtype, shape};
  args.out = dr::MutableTensor{dout.ptr, c.dtype, shape};
  args.lse = c.lse ? static_cast<float*>(dlse.ptr) : nullptr;
  cudaStream_t stream = nullptr;
  check(cudaStreamCreate(&stream), "cudaStreamCreate");
  args.stream = stream;
  if (c.graph) {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "begin capture");
    backend->run(args);
    check(cudaStreamEndCapture(stream, &graph), "end capture");
    check(cudaGraphInstantiate(&exec, graph, 0), "graph instantiate");
    check(cudaGraphLaunch(exec, stream), "graph launch");
    check(cudaStreamSynchronize(stream), "graph sync");
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  } else {
    backend->run(args);
  }
  check(cudaStreamSynchronize(stream), "kernel");
  check(cudaGetLastError(), "kernel");
  cudaStreamDestroy(stream);

  const dr::HostTensor got = gpu_test::download(dout.ptr, c.dtype, shape, "copy out");
  const std::vector<float> got_lse = gpu_test::download_floats(dlse.ptr, ref.lse.size(), "copy lse");

  const gpu_test::L2Error l2 = gpu_test::relative_l2(got, ref.out);
  res.rel_l2 = l2.rel_l2;
  res.nonfinite = l2.nonfinite;
  bool lse_ok = true;
  if (c.lse) {
    for (std::size_t i = 0; i < ref.lse.size(); ++i) {
      const float a = got_lse[i], b = ref.lse[i];
      if (std::isinf(b) && b < 0) {
        if (!(std::isinf(a) && a < 0)) lse_ok = false;
      } else if (!std::isfinite(a)) {
        lse_ok = false;
      } else {
        res.lse_err = std::max(res.lse_err, static_cast<double>(std::fabs(a - b)));
      }
    }
    if (!lse_ok) res.note = "lse -inf/NaN mismatch";
    lse_ok = lse_ok && res.lse_err <= kLseTolerance;
  }
  res.ok = res.nonfinite == 0 && res.rel_l2 <= tolerance(c.dtype) && lse_ok;
  if (res.nonfinite > 0) res.note = std::to_string(res.nonfinite) + " non-finite outputs";
  return res;
}

// ---- API errors ---------------------------------------------------------------------------------

struct ApiCheck {
  std::string name;
  std::string expected_field;
  std::function<void()> body;
};

bool run_api_checks(std::vector<std::string>& lines) {
  bool all_ok = true;
  const dr::BlockLayout layout = dr::full_layout(1, 2, 300, 128);
  dr::CudaAttentionOptions options;  // bf16, head_dim 128
  const dr::Shape s = shape_of(1, 300, 2, 128);
  const std::size_t bytes = static_cast<std::size_t>(s.elements()) * 2 + 16;
  DeviceBuffer buf_q(bytes), buf_k(bytes), buf_v(bytes), buf_o(bytes);
  auto good_args = [&] {
    dr::AttentionArgs a;
    a.q = dr::ConstTensor{buf_q.ptr, dr::DType::bf16, s};
    a.k = dr::ConstTensor{buf_k.ptr, dr::DType::bf16, s};
    a.v = dr::ConstTensor{buf_v.ptr, dr::DType::bf16, s};
    a.out = dr::MutableTensor{buf_o.ptr, dr::DType::bf16, s};
    return a;
  };
  const std::vector<ApiCheck> checks = {
      {"plan: block 32", "layout.block_size", [&] { dr::plan_cuda_attention(dr::full_layout(1, 1, 100, 32), options); }},
      {"plan: head_dim 96", "options.head_dim",
       [&] {
         dr::CudaAttentionOptions o = options;
         o.head_dim = 96;
         dr::plan_cuda_attention(layout, o);
       }},
      {"plan: f32", "options.dtype",
       [&] {
         dr::CudaAttentionOptions o = options;
         o.dtype = dr::DType::f32;
         dr::plan_cuda_attention(layout, o);
       }},
      {"plan: negative scale", "options.scale",
       [&] {
         dr::CudaAttentionOptions o = options;
         o.scale = -1.0;
         dr::plan_cuda_attention(layout, o);
       }},
      {"plan: wgmma with block 64", "options.kernel",
       [&] {
         dr::CudaAttentionOptions o = options;
         o.kernel = dr::CudaKernel::wgmma;
         dr::plan_cuda_attention(dr::full_layout(1, 2, 300, 64), o);
       }},
      {"plan: 5 stages", "options.stages",
       [&] {
         dr::CudaAttentionOptions o = options;
         o.stages = 5;
         dr::plan_cuda_attention(layout, o);
       }},
      {"run: f16 q on a bf16 plan", "q",
       [&] {
         auto a = good_args();
         a.q.dtype = a.k.dtype = a.v.dtype = dr::DType::f16;
         dr::plan_cuda_attention(layout, options)->run(a);
       }},
      {"run: wrong token count", "k",
       [&] {
         auto a = good_args();
         a.k.shape.tokens = 299;
         dr::plan_cuda_attention(layout, options)->run(a);
       }},
      {"run: layout heads differ", "layout.heads",
       [&] {
         auto a = good_args();
         a.q.shape.heads = a.k.shape.heads = a.v.shape.heads = a.out.shape.heads = 1;
         dr::plan_cuda_attention(layout, options)->run(a);
       }},
      {"run: misaligned out", "out",
       [&] {
         auto a = good_args();
         a.out.data = static_cast<char*>(buf_o.ptr) + 2;
         dr::plan_cuda_attention(layout, options)->run(a);
       }},
      {"run: head_dim 64 on a 128 plan", "q",
       [&] {
         auto a = good_args();
         a.q.shape.head_dim = a.k.shape.head_dim = a.v.shape.head_dim = a.out.shape.head_dim = 64;
         a.q.shape.heads = a.k.shape.heads = a.v.shape.heads = a.out.shape.heads = 2;
         dr::plan_cuda_attention(layout, options)->run(a);
       }},
  };
  for (const ApiCheck& chk : checks) {
    const gpu_test::Thrown thrown = gpu_test::thrown_by(chk.body);
    const bool ok = thrown.error && thrown.field == chk.expected_field;
    const std::string got =
        thrown.error ? thrown.what : thrown.other ? "other exception: " + thrown.what : std::string("no error");
    all_ok = all_ok && ok;
    char line[512];
    std::snprintf(line, sizeof(line), "%-34s expects %-18s %-4s  %s", chk.name.c_str(), chk.expected_field.c_str(),
                  ok ? "ok" : "FAIL", got.c_str());
    lines.emplace_back(line);
  }
  return all_ok;
}

// ---- the case list ------------------------------------------------------------------------------

std::vector<Case> build_cases(bool quick, const std::string& which) {
  using dr::CudaKernel;
  using dr::DType;
  std::vector<CudaKernel> kernels;
  if (which == "all" || which == "wgmma") kernels.push_back(CudaKernel::wgmma);
  if (which == "all" || which == "mma-sync") kernels.push_back(CudaKernel::mma_sync);
  std::vector<Case> cases;
  for (CudaKernel kernel : kernels) {
    const bool wg = kernel == CudaKernel::wgmma;
    if (quick) {
      cases.push_back({kernel, DType::bf16, 128, 128, 2, 2, 300, LayoutKind::random, 0.4, 1.0, true, false});
      cases.push_back({kernel, DType::f16, 64, 128, 1, 3, 257, LayoutKind::full, 1.0, 1.0, true, false});
      if (!wg) cases.push_back({kernel, DType::bf16, 128, 64, 2, 1, 201, LayoutKind::random, 0.5, 1.0, true, false});
      continue;
    }
    for (DType dtype : {DType::bf16, DType::f16}) {
      for (int dim : {128, 64}) {
        std::vector<int> blocks = {128};
        if (!wg) blocks.push_back(64);
        for (int block : blocks) {
          cases.push_back({kernel, dtype, dim, block, 2, 3, 1000, LayoutKind::full, 1.0, 1.0, true, false});
          cases.push_back({kernel, dtype, dim, block, 2, 2, 777, LayoutKind::random, 0.3, 1.0, true, false});
          cases.push_back({kernel, dtype, dim, block, 1, 4, 1153, LayoutKind::random, 0.15, 2.0, false, false});
          cases.push_back({kernel, dtype, dim, block, 2, 2, 0, LayoutKind::radial, 0.0, 1.0, true, false});
          cases.push_back({kernel, dtype, dim, block, 1, 2, 129, LayoutKind::random, 0.5, 1.0, true, false});
        }
      }
    }
    // Edge cases: one token, a single partial block, all rows empty, one head's rows empty next to
    // full ones, peaked softmax, many rows (the persistent grid wraps and the pipeline phases flip
    // many times), graph capture.
    const int block = 128;
    cases.push_back({kernel, DType::bf16, 128, block, 1, 1, 1, LayoutKind::full, 1.0, 1.0, true, false});
    cases.push_back({kernel, DType::bf16, 128, block, 2, 1, 77, LayoutKind::full, 1.0, 1.0, true, false});
    cases.push_back({kernel, DType::bf16, 64, block, 2, 2, 500, LayoutKind::empty, 0.0, 1.0, true, false});
    for (int dim : {64, 128}) {
      cases.push_back(
          {kernel, DType::bf16, dim, block, 2, 3, 4500, LayoutKind::first_head_empty, 0.0, 1.0, true, false});
    }
    cases.push_back({kernel, DType::f16, 128, block, 1, 2, 640, LayoutKind::full, 1.0, 4.0, true, false});
    cases.push_back({kernel, DType::bf16, 128, block, 2, 4, 4133, LayoutKind::random, 0.12, 1.0, true, false});
    cases.push_back({kernel, DType::bf16, 128, block, 2, 2, 1001, LayoutKind::random, 0.3, 1.0, true, true});
    cases.push_back({kernel, DType::bf16, 128, block, 2, 3, 0, LayoutKind::radial, 0.0, 1.0, true, false, 0,
                     dr::CudaSchedule::longest_first});
    if (wg) {  // the other K/V pipeline depth of head_dim 128 (the default is 2 stages)
      for (DType dtype : {DType::bf16, DType::f16}) {
        cases.push_back({kernel, dtype, 128, block, 2, 3, 1000, LayoutKind::full, 1.0, 1.0, true, false, 3});
        cases.push_back({kernel, dtype, 128, block, 2, 4, 4133, LayoutKind::random, 0.12, 1.0, true, false, 3});
        cases.push_back({kernel, dtype, 128, block, 2, 2, 0, LayoutKind::radial, 0.0, 1.0, true, false, 3});
      }
    }
  }
  return cases;
}

// One table row; a case that threw has no backend yet and shows the kernel it asked for.
void print_row(std::size_t i, const Case& c, const Result& r) {
  const std::string backend = r.backend.empty() ? dr::to_string(c.kernel) : r.backend;
  std::printf("%-3zu %-13s %-5s %4d %5d %2lld %3lld %6lld %-7s %7.3f %3s %5s %6s %10.2e %10.2e %8s  %s\n", i,
              backend.c_str(), dr::to_string(c.dtype).c_str(), c.head_dim, c.block, static_cast<long long>(c.batch),
              static_cast<long long>(c.heads), static_cast<long long>(r.tokens), to_cstr(c.layout), r.layout_density,
              c.lse ? "yes" : "no", c.graph ? "yes" : "no", c.stages == 0 ? "auto" : std::to_string(c.stages).c_str(),
              r.rel_l2, r.lse_err, r.ok ? "ok" : "FAIL", r.note.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  gpu_test::CommandLine cl{false, 20261126, "all"};
  const char* options = "[--quick] [--seed N] [--kernel all|wgmma|mma-sync]";
  if (!gpu_test::start_program(argc, argv, true, options, cl)) return 2;

  Rng rng(cl.seed);
  std::printf("\n%-3s %-13s %-5s %4s %5s %2s %3s %6s %-7s %7s %3s %5s %6s %10s %10s %8s  %s\n", "#", "backend", "dtype",
              "dim", "block", "B", "H", "T", "layout", "density", "lse", "graph", "stages", "rel_l2", "lse_err", "status",
              "note");
  const std::vector<Case> cases = build_cases(cl.quick, cl.kernel);
  int failures = gpu_test::run_cases<Result>(cases, [&](const Case& c) { return run_case(c, rng); }, print_row);

  std::vector<std::string> api_lines;
  bool api_ok = false;
  try {
    api_ok = run_api_checks(api_lines);
  } catch (const std::exception& e) {
    api_lines.push_back(std::string("API checks aborted: ") + e.what());
  }
  std::printf("\nAPI errors:\n");
  for (const std::string& line : api_lines) std::printf("  %s\n", line.c_str());
  if (!api_ok) ++failures;

  std::printf("\n%zu cases, %d failed (tolerance: rel_l2 <= %.0e bf16, %.0e f16; lse_err <= %.0e)\n", cases.size(),
              failures, tolerance(dr::DType::bf16), tolerance(dr::DType::f16), kLseTolerance);
  return failures == 0 ? 0 : 1;
}
