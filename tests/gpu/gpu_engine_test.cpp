// GPU test of the CUDA SparseAttentionEngine (engine.h) against the CPU engine and the CPU oracle.
//
// Not a CTest test (CI has no GPU): build it with the CUDA backend and run it on an sm_90 machine.
// Every case draws fresh structured Q/K (block-scale directions plus noise, so both selection modes
// drop candidates) and random V in f16 or bf16, uploads them with cudaMemcpy, poisons the outputs
// with NaN (cudaMemset 0xFF) and runs the CUDA engine's select() + attend() on a stream:
//   layout: engine.layout(slot) must equal the CPU engine's layout on the same 16-bit inputs, entry
//           for entry; kept(slot) must equal the layout's entries and batch * heads * blocks^2;
//   out:    relative L2 error against attention_reference with that layout (every element finite),
//           < 2e-2 for bf16, < 5e-3 for f16;
//   lse:    max |lse - ref| (every value finite: selection never leaves a row empty).
// Then the slot semantics (keep_layouts across two slots, a replaced shared slot, batch changes),
// selection from f32 Q/K, non-finite inputs, the device memory counts (device_bytes) and the errors
// of bad options and calls: pageable and pinned host memory, misaligned tensors on both kernels,
// layouts of another geometry (each must be a dynamicrad::Error naming the field). Prints one table
// row per case; exits 1 when any case fails.
//
// Usage: gpu_engine_test [--quick] [--seed N]
//   --quick  two cases and the checks (for compute-sanitizer)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dynamicrad/attention.h"
#include "dynamicrad/cuda_attention.h"
#include "dynamicrad/cuda_mask.h"
#include "dynamicrad/engine.h"
#include "dynamicrad/error.h"
#include "dynamicrad/geometry.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/rotary.h"
#include "dynamicrad/select.h"
#include "dynamicrad/tensor.h"
#include "gpu_support.h"

namespace dr = dynamicrad;

namespace {

using gpu_test::bytes_of;
using gpu_test::check;
using gpu_test::converted;
using gpu_test::DeviceBuffer;
using gpu_test::expect_error;
using gpu_test::Rng;
using gpu_test::shape_of;
using gpu_test::Stream;

// ---- inputs -------------------------------------------------------------------------------------

struct HostQkv {
  dr::HostTensor q, k, v;
};

// Q and K: one of six per-head directions (changing every 24 tokens) plus N(0, 1) noise; the
// directions shrink with head_dim so that block scores stay in a range where the selection has
// choices to make. V: N(0, 1). All rounded to `dtype`.
HostQkv make_qkv(Rng& rng, const dr::Shape& s, dr::DType dtype) {
  constexpr int kDirections = 6;
  const double dir_std = 1.5 * std::sqrt(16.0 / static_cast<double>(s.head_dim));
  std::vector<double> dirs(static_cast<std::size_t>(2 * kDirections * s.heads * s.head_dim));
  for (double& x : dirs) x = dir_std * rng.normal();
  HostQkv x{dr::HostTensor(dtype, s), dr::HostTensor(dtype, s), dr::HostTensor(dtype, s)};
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t t = 0; t < s.tokens; ++t) {
      const std::int64_t dir = (t / 24 + 2 * b) % kDirections;
      for (std::int64_t h = 0; h < s.heads; ++h)
        for (std::int64_t d = 0; d < s.head_dim; ++d) {
          const std::int64_t i = x.q.index(b, t, h, d);
          const std::size_t qd = static_cast<std::size_t>((dir * s.heads + h) * s.head_dim + d);
          const std::size_t kd = static_cast<std::size_t>(((kDirections + dir) * s.heads + h) * s.head_dim + d);
          x.q.set(i, static_cast<float>(dirs[qd] + rng.normal()));
          x.k.set(i, static_cast<float>(dirs[kd] + rng.normal()));
          x.v.set(i, static_cast<float>(rng.normal()));
        }
    }
  return x;
}

// Q, K, V, out and lse on the device; out and lse are poisoned with NaN (all-ones bits).
struct DeviceQkv {
  dr::Shape shape;
  dr::DType dtype;
  DeviceBuffer q, k, v, out, lse;

  explicit DeviceQkv(const HostQkv& x)
      : shape(x.q.shape()), dtype(x.q.dtype()), q(bytes_of(x.q)), k(bytes_of(x.k)), v(bytes_of(x.v)),
        out(bytes_of(x.q)), lse(lse_bytes()) {
    gpu_test::upload(q.ptr, x.q, "copy q");
    gpu_test::upload(k.ptr, x.k, "copy k");
    gpu_test::upload(v.ptr, x.v, "copy v");
    poison();
  }
  std::size_t out_bytes() const { return static_cast<std::size_t>(shape.elements()) * dr::dtype_size(dtype); }
  std::size_t lse_bytes() const { return static_cast<std::size_t>(shape.batch * shape.heads * shape.tokens) * sizeof(float); }
  void poison() {
    check(cudaMemset(out.ptr, 0xFF, out_bytes()), "poison out");
    check(cudaMemset(lse.ptr, 0xFF, lse_bytes()), "poison lse");
  }
  dr::ConstTensor tq() const { return dr::ConstTensor{q.ptr, dtype, shape}; }
  dr::ConstTensor tk() const { return dr::ConstTensor{k.ptr, dtype, shape}; }
  dr::AttentionArgs args(bool with_lse, cudaStream_t stream) const {
    dr::AttentionArgs a;
    a.q = tq();
    a.k = tk();
    a.v = dr::ConstTensor{v.ptr, dtype, shape};
    a.out = dr::MutableTensor{out.ptr, dtype, shape};
    a.lse = with_lse ? static_cast<float*>(lse.ptr) : nullptr;
    a.stream = stream;
    return a;
  }
};

// ---- comparisons --------------------------------------------------------------------------------

double tolerance(dr::DType dtype) { return dtype == dr::DType::bf16 ? 2e-2 : 5e-3; }
constexpr double kLseTolerance = 2e-3;

// "" when equal, else where the layouts first differ.
std::string layout_difference(const dr::BlockLayout& got, const dr::BlockLayout& want) {
  if (got.batch != want.batch || got.heads != want.heads || got.tokens != want.tokens ||
      got.block_size != want.block_size || got.blocks != want.blocks) {
    return "layout shape differs (batch " + std::to_string(got.batch) + " vs " + std::to_string(want.batch) +
           ", blocks " + std::to_string(got.blocks) + " vs " + std::to_string(want.blocks) + ")";
  }
  if (got.row_offsets.size() != want.row_offsets.size()) return "row_offsets sizes differ";
  for (std::size_t r = 0; r + 1 < want.row_offsets.size(); ++r) {
    const bool same_row =
        got.row_offsets[r + 1] - got.row_offsets[r] == want.row_offsets[r + 1] - want.row_offsets[r] &&
        std::equal(want.col_indices.begin() + want.row_offsets[r], want.col_indices.begin() + want.row_offsets[r + 1],
                   got.col_indices.begin() + got.row_offsets[r]);
    if (!same_row) {
      return "row " + std::to_string(r) + " differs (" + std::to_string(got.row_offsets[r + 1] - got.row_offsets[r]) +
             " vs " + std::to_string(want.row_offsets[r + 1] - want.row_offsets[r]) + " blocks)";
    }
  }
  if (got.row_offsets != want.row_offsets || got.col_indices != want.col_indices) return "CSR arrays differ";
  return "";
}

struct OutputCheck {
  double rel_l2 = 0.0;
  double lse_err = 0.0;
  std::int64_t nonfinite = 0;
  std::int64_t lse_bad = 0;
  bool ok = false;
};

// Downloads out (and lse) and compares them with the oracle over `layout`.
OutputCheck check_output(const HostQkv& x, const DeviceQkv& d, const dr::BlockLayout& layout, bool with_lse,
                         double scale = 0.0) {
  OutputCheck c;
  dr::AttentionOptions opts;
  opts.scale = scale;
  const gpu_test::Reference ref = gpu_test::attention_oracle(x.q, x.k, x.v, layout, opts);

  const dr::HostTensor got = gpu_test::download(d.out.ptr, d.dtype, d.shape, "copy out");
  const std::vector<float> got_lse = gpu_test::download_floats(d.lse.ptr, ref.lse.size(), "copy lse");
  const gpu_test::L2Error l2 = gpu_test::relative_l2(got, ref.out);
  c.rel_l2 = l2.rel_l2;
  c.nonfinite = l2.nonfinite;
  if (with_lse) {
    for (std::size_t i = 0; i < ref.lse.size(); ++i) {
      if (!std::isfinite(got_lse[i]) || !std::isfinite(ref.lse[i])) {
        ++c.lse_bad;
        continue;
      }
      c.lse_err = std::max(c.lse_err, static_cast<double>(std::fabs(got_lse[i] - ref.lse[i])));
    }
  } else {
    // args.lse was null: the poisoned buffer must be untouched (all-ones bits read as NaN).
    for (float v : got_lse)
      if (!std::isnan(v)) ++c.lse_bad;
  }
  c.ok = c.nonfinite == 0 && c.rel_l2 < tolerance(d.dtype) && c.lse_bad == 0 && c.lse_err <= kLseTolerance;
  return c;
}

// Non-finite elements of the device output (all of them while it is still poisoned).
std::int64_t nonfinite_outputs(const DeviceQkv& d) {
  const dr::HostTensor got = gpu_test::download(d.out.ptr, d.dtype, d.shape, "copy out");
  std::int64_t n = 0;
  for (std::int64_t i = 0; i < d.shape.elements(); ++i) n += std::isfinite(got.get(i)) ? 0 : 1;
  return n;
}

// "" when no call since the poisoning wrote to the device output, after waiting for the device.
std::string output_untouched(const DeviceQkv& d) {
  check(cudaDeviceSynchronize(), "sync");
  return nonfinite_outputs(d) == d.shape.elements() ? "" : "an error call wrote to out";
}

std::string describe(const OutputCheck& c) {
  std::string s = "rel_l2 " + std::to_string(c.rel_l2) + ", lse_err " + std::to_string(c.lse_err);
  if (c.nonfinite > 0) s += ", " + std::to_string(c.nonfinite) + " non-finite outputs";
  if (c.lse_bad > 0) s += ", " + std::to_string(c.lse_bad) + " bad lse values";
  return s;
}

// Wan's rotation (no norm) of d's q into d's out with the [tokens, head_dim] tables cos / sin.
dr::RotaryArgs rotary_args(const DeviceQkv& d, const void* cos, const void* sin, cudaStream_t stream) {
  dr::RotaryArgs r;
  r.x = d.tq();
  r.out = dr::MutableTensor{d.out.ptr, d.dtype, d.shape};
  r.cos = static_cast<const float*>(cos);
  r.sin = static_cast<const float*>(sin);
  r.stream = stream;
  return r;
}

// ---- geometry and options -----------------------------------------------------------------------

struct GeometrySpec {
  int block;
  std::int64_t head_dim, heads, frames, height, width, text;
  dr::TextPlacement placement;
  dr::TokenOrder order;
  bool sink;  // prior.first_frame_sink
};

dr::VideoGeometry geometry_of(const GeometrySpec& g) {
  dr::VideoGeometry v;
  v.block_size = g.block;
  v.head_dim = g.head_dim;
  v.heads = g.heads;
  v.frames = g.frames;
  v.height = g.height;
  v.width = g.width;
  v.text_tokens = g.text;
  v.text_placement = g.placement;
  v.order = g.order;
  return v;
}

dr::EngineOptions engine_options(const GeometrySpec& g, dr::Device device, int slots = 1, bool keep = false) {
  dr::EngineOptions o;
  o.geometry = geometry_of(g);
  o.prior.gamma = 1.0;
  o.prior.first_frame_sink = g.sink;
  o.device = device;
  o.slots = slots;
  o.keep_layouts = keep;
  return o;
}

dr::SelectionParams selection(dr::SelectionMode mode) {
  dr::SelectionParams p;
  p.mode = mode;
  p.r_near = 0.5;
  p.r_far = 0.3;
  p.tau_near = 0.03;
  p.tau_far = 0.06;
  return p;
}

dr::Shape call_shape(const dr::SparseAttentionEngine& e, std::int64_t batch) {
  const dr::VideoGeometry& g = e.options().geometry;
  return shape_of(batch, e.tokens(), g.heads, g.head_dim);
}

// ---- cases --------------------------------------------------------------------------------------

struct Case {
  GeometrySpec geometry;
  dr::DType dtype;
  std::int64_t batch;
  dr::SelectionMode mode;
  bool lse;
};

struct CaseResult {
  bool ok = false;
  std::int64_t tokens = 0;
  double density = 0.0;
  OutputCheck out;
  std::string note;
};

CaseResult run_case(const Case& c, Rng& rng) {
  CaseResult r;
  dr::SparseAttentionEngine cpu(engine_options(c.geometry, dr::Device::cpu));
  dr::SparseAttentionEngine gpu(engine_options(c.geometry, dr::Device::cuda));
  r.tokens = gpu.tokens();
  const dr::SelectionParams sel = selection(c.mode);
  const HostQkv x = make_qkv(rng, call_shape(gpu, c.batch), c.dtype);
  cpu.select(x.q.view(), x.k.view(), sel, 0);
  const dr::BlockLayout want = cpu.layout(0);

  DeviceQkv d(x);
  Stream stream;
  gpu.select(d.tq(), d.tk(), sel, 0, stream.s);
  gpu.attend(d.args(c.lse, stream.s), 0);
  const dr::KeptBlocks kept = gpu.kept(0, stream.s);
  const dr::BlockLayout got = gpu.layout(0, stream.s);
  check(cudaStreamSynchronize(stream.s), "attend");
  check(cudaGetLastError(), "attend");

  std::vector<std::string> notes;
  const std::string diff = layout_difference(got, want);
  if (!diff.empty()) notes.push_back("layout vs CPU engine: " + diff);
  const std::int64_t total = c.batch * c.geometry.heads * want.blocks * want.blocks;
  if (kept.kept != got.row_offsets.back() || kept.kept != want.row_offsets.back()) {
    notes.push_back("kept " + std::to_string(kept.kept) + " vs layout " + std::to_string(got.row_offsets.back()) +
                    " / CPU " + std::to_string(want.row_offsets.back()));
  }
  if (kept.total != total) notes.push_back("total " + std::to_string(kept.total) + " vs " + std::to_string(total));
  r.density = static_cast<double>(got.row_offsets.back()) / static_cast<double>(total);
  try {
    dr::validate(got);
    r.out = check_output(x, d, got, c.lse);
    if (!r.out.ok) notes.push_back(describe(r.out));
  } catch (const dr::Error& e) {
    notes.push_back(std::string("engine layout invalid: ") + e.what());
  }
  r.ok = notes.empty();
  for (const std::string& n : notes) r.note += (r.note.empty() ? "" : "; ") + n;
  return r;
}

std::vector<Case> build_cases(bool quick) {
  using dr::DType;
  using dr::SelectionMode;
  using dr::TextPlacement;
  using dr::TokenOrder;
  const SelectionMode st = SelectionMode::static_ratio, dy = SelectionMode::dynamic_threshold;
  // {block, head_dim, heads, frames, height, width, text, placement, order, sink}
  const GeometrySpec a{128, 128, 2, 6, 12, 16, 19, TextPlacement::suffix, TokenOrder::raster, false};   // 1171 tokens
  const GeometrySpec b{128, 64, 3, 8, 9, 17, 0, TextPlacement::none, TokenOrder::tiled3d, false};       // 1224
  const GeometrySpec c{128, 128, 2, 6, 10, 17, 23, TextPlacement::suffix, TokenOrder::tiled3d, true};   // 1043
  const GeometrySpec d{64, 128, 2, 5, 9, 16, 19, TextPlacement::suffix, TokenOrder::raster, false};     // 739
  const GeometrySpec e{64, 64, 3, 4, 12, 16, 19, TextPlacement::suffix, TokenOrder::raster, true};      // 787
  const GeometrySpec f{64, 64, 2, 5, 10, 13, 0, TextPlacement::none, TokenOrder::tiled3d, false};       // 650
  const GeometrySpec g{64, 128, 1, 4, 9, 13, 7, TextPlacement::prefix, TokenOrder::raster, false};      // 475
  const GeometrySpec h{64, 64, 2, 6, 11, 13, 5, TextPlacement::suffix, TokenOrder::tiled3d, true};      // 863
  const GeometrySpec one_frame{128, 64, 2, 1, 20, 30, 11, TextPlacement::suffix, TokenOrder::raster, true};  // 611, dense
  std::vector<Case> cases;
  if (quick) {
    cases.push_back({a, DType::bf16, 2, st, true});
    cases.push_back({f, DType::f16, 1, dy, true});
    return cases;
  }
  for (const GeometrySpec& s : {a, b, c, d, e, f, g, h}) {
    cases.push_back({s, DType::bf16, 1, st, true});
    cases.push_back({s, DType::f16, 2, dy, true});
    cases.push_back({s, DType::bf16, 2, dy, false});
    cases.push_back({s, DType::f16, 1, st, false});
  }
  cases.push_back({one_frame, DType::bf16, 2, st, true});
  cases.push_back({one_frame, DType::f16, 1, dy, true});
  return cases;
}

// ---- slot semantics and errors ------------------------------------------------------------------

struct Check {
  std::string name;
  std::function<std::string()> body;  // "" when it passes
};

std::vector<Check> build_checks(Rng& rng) {
  using dr::DType;
  const GeometrySpec spec{128, 128, 2, 6, 12, 16, 19, dr::TextPlacement::suffix, dr::TokenOrder::raster, false};
  const GeometrySpec spec64{64, 64, 2, 5, 10, 13, 0, dr::TextPlacement::none, dr::TokenOrder::tiled3d, false};
  const dr::SelectionParams st = selection(dr::SelectionMode::static_ratio);
  const dr::SelectionParams dy = selection(dr::SelectionMode::dynamic_threshold);
  std::vector<Check> checks;

  // keep_layouts: two slots (different inputs, batches and modes) stay usable, in either order; a
  // third slot of slot 0's batch rebuilds that batch's shared buffers, which slot 0 no longer reads.
  for (const GeometrySpec& s : {spec, spec64}) {
    checks.push_back({"keep_layouts: two slots, block " + std::to_string(s.block), [&rng, s, st, dy]() -> std::string {
      dr::SparseAttentionEngine cpu(engine_options(s, dr::Device::cpu, 3, true));
      dr::SparseAttentionEngine gpu(engine_options(s, dr::Device::cuda, 3, true));
      const HostQkv xa = make_qkv(rng, call_shape(gpu, 1), DType::bf16);
      const HostQkv xb = make_qkv(rng, call_shape(gpu, 2), DType::bf16);
      const HostQkv xc = make_qkv(rng, call_shape(gpu, 1), DType::bf16);
      cpu.select(xa.q.view(), xa.k.view(), st, 0);
      cpu.select(xb.q.view(), xb.k.view(), dy, 1);
      const dr::BlockLayout want_a = cpu.layout(0), want_b = cpu.layout(1);
      DeviceQkv da(xa), db(xb), dc(xc);
      Stream stream;
      gpu.select(da.tq(), da.tk(), st, 0, stream.s);
      gpu.select(db.tq(), db.tk(), dy, 1, stream.s);
      gpu.select(dc.tq(), dc.tk(), dy, 2, stream.s);
      std::string diff = layout_difference(gpu.layout(0, stream.s), want_a);
      if (!diff.empty()) return "slot 0: " + diff;
      diff = layout_difference(gpu.layout(1, stream.s), want_b);
      if (!diff.empty()) return "slot 1: " + diff;
      if (gpu.kept(0, stream.s).kept != want_a.row_offsets.back()) return "kept(0) differs from the layout";
      if (gpu.kept(1, stream.s).kept != want_b.row_offsets.back()) return "kept(1) differs from the layout";
      if (gpu.kept(1, stream.s).total != 2 * s.heads * want_b.blocks * want_b.blocks) return "kept(1).total";
      if (gpu.device_bytes() <= 0) return "device_bytes() is " + std::to_string(gpu.device_bytes());
      // Slot 1 first, then slot 0, then slot 0's layout reused with new inputs.
      gpu.attend(db.args(true, stream.s), 1);
      gpu.attend(da.args(true, stream.s), 0);
      gpu.attend(dc.args(true, stream.s), 0);
      check(cudaStreamSynchronize(stream.s), "attend");
      OutputCheck o = check_output(xb, db, want_b, true);
      if (!o.ok) return "slot 1: " + describe(o);
      o = check_output(xa, da, want_a, true);
      if (!o.ok) return "slot 0: " + describe(o);
      o = check_output(xc, dc, want_a, true);
      if (!o.ok) return "slot 0 reused: " + describe(o);
      // Reselecting slot 0 leaves slot 1 alone.
      gpu.select(dc.tq(), dc.tk(), dy, 0, stream.s);
      cpu.select(xc.q.view(), xc.k.view(), dy, 0);
      diff = layout_difference(gpu.layout(0, stream.s), cpu.layout(0));
      if (!diff.empty()) return "slot 0 reselected: " + diff;
      diff = layout_difference(gpu.layout(1, stream.s), want_b);
      if (!diff.empty()) return "slot 1 after reselecting slot 0: " + diff;
      db.poison();
      gpu.attend(db.args(false, stream.s), 1);
      check(cudaStreamSynchronize(stream.s), "attend");
      o = check_output(xb, db, want_b, false);
      return o.ok ? "" : "slot 1 again: " + describe(o);
    }});
  }

  // One engine, one batch, both 16-bit types: each attend() runs on a plan of its own dtype, with the
  // slot's layout.
  checks.push_back({"bf16 then f16 on one engine", [&rng, spec, dy]() -> std::string {
    dr::SparseAttentionEngine cpu(engine_options(spec, dr::Device::cpu));
    dr::SparseAttentionEngine gpu(engine_options(spec, dr::Device::cuda));
    const HostQkv xb = make_qkv(rng, call_shape(gpu, 1), DType::bf16);
    const HostQkv xh{converted(xb.q, DType::f16), converted(xb.k, DType::f16), converted(xb.v, DType::f16)};
    DeviceQkv db(xb), dh(xh);
    cpu.select(xb.q.view(), xb.k.view(), dy, 0);
    const dr::BlockLayout want = cpu.layout(0);
    gpu.select(db.tq(), db.tk(), dy, 0, nullptr);
    gpu.attend(db.args(true, nullptr), 0);
    gpu.attend(dh.args(true, nullptr), 0);
    check(cudaDeviceSynchronize(), "attend");
    OutputCheck o = check_output(xb, db, want, true);
    if (!o.ok) return "bf16: " + describe(o);
    o = check_output(xh, dh, want, true);
    return o.ok ? "" : "f16 after bf16: " + describe(o);
  }});

  // The rotary kernel against the CPU's bits where the kernel choice depends on the arguments: an out
  // aligned only to a pair of elements while x is 16-byte aligned (no vector stores into it), and
  // HunyuanVideo's per-head norm with pooled block means at head_dim 256 (past the one-vector-a-lane
  // kernel's 128) and 64.
  checks.push_back({"rotary: unaligned out, pooled head_dim 256 / 64", [&rng]() -> std::string {
    struct RotaryCase {
      const char* name;
      dr::Shape shape;
      bool hunyuan;       // per-element pairs, per-head norm, pooled means, text after the video
      std::size_t shift;  // bytes between out's buffer and out
    };
    const std::vector<RotaryCase> cases = {{"wan, out 4 bytes off", shape_of(1, 300, 2, 128), false, 4},
                                           {"hunyuan, head_dim 256", shape_of(2, 300, 2, 256), true, 0},
                                           {"hunyuan, head_dim 64", shape_of(2, 300, 3, 64), true, 0}};
    for (const RotaryCase& c : cases) {
      const dr::Shape& s = c.shape;
      const dr::HostTensor x = gpu_test::random_tensor(rng, DType::bf16, s, 1.0);
      const std::int64_t rotated = c.hunyuan ? 256 : s.tokens;
      std::vector<float> cos(static_cast<std::size_t>(rotated * s.head_dim)), sin(cos.size());
      for (std::size_t i = 0; i < cos.size(); ++i) {
        cos[i] = static_cast<float>(std::cos(0.01 * static_cast<double>(i)));
        sin[i] = static_cast<float>(std::sin(0.01 * static_cast<double>(i)));
      }
      std::vector<float> weight(static_cast<std::size_t>(s.head_dim));
      for (float& w : weight) w = static_cast<float>(1.0 + 0.1 * rng.normal());
      constexpr int kPoolBlock = 64;
      constexpr std::int64_t kPooledBlocks = 4;
      const std::size_t pooled_count = static_cast<std::size_t>(s.batch * s.heads * kPooledBlocks * s.head_dim);
      auto args_for = [&](const void* xp, void* outp, const float* c0, const float* s0, const float* w, float* pooled) {
        dr::RotaryArgs r;
        r.x = dr::ConstTensor{xp, DType::bf16, s};
        r.out = dr::MutableTensor{outp, DType::bf16, s};
        r.cos = c0;
        r.sin = s0;
        if (c.hunyuan) {
          r.pairs = dr::RotaryPairs::per_element;
          r.rotated_tokens = rotated;
          r.norm_weight = w;
          r.norm_scope = dr::NormScope::head;
          r.norm_weighting = dr::NormWeighting::after_rounding;
          r.norm_eps = 1e-6;
          r.pooled = pooled;
          r.pool_block = kPoolBlock;
          r.pooled_blocks = kPooledBlocks;
        }
        return r;
      };
      dr::HostTensor want(DType::bf16, s);
      std::vector<float> want_pooled(pooled_count);
      dr::apply_rotary(args_for(x.view().data, want.mutable_view().data, cos.data(), sin.data(), weight.data(),
                                want_pooled.data()),
                       dr::Device::cpu);
      constexpr std::size_t kFloat = sizeof(float);
      DeviceBuffer dx(bytes_of(x)), dout(bytes_of(x) + 16), dcos(cos.size() * kFloat), dsin(sin.size() * kFloat),
          dw(weight.size() * kFloat), dpooled(pooled_count * kFloat);
      gpu_test::upload(dx.ptr, x, "copy x");
      check(cudaMemcpy(dcos.ptr, cos.data(), cos.size() * kFloat, cudaMemcpyHostToDevice), "copy cos");
      check(cudaMemcpy(dsin.ptr, sin.data(), sin.size() * kFloat, cudaMemcpyHostToDevice), "copy sin");
      check(cudaMemcpy(dw.ptr, weight.data(), weight.size() * kFloat, cudaMemcpyHostToDevice), "copy weight");
      void* const out = static_cast<char*>(dout.ptr) + c.shift;
      dr::apply_rotary(args_for(dx.ptr, out, static_cast<const float*>(dcos.ptr), static_cast<const float*>(dsin.ptr),
                                static_cast<const float*>(dw.ptr), static_cast<float*>(dpooled.ptr)),
                       dr::Device::cuda);
      check(cudaDeviceSynchronize(), std::string("rotary ").append(c.name).c_str());
      const dr::HostTensor got = gpu_test::download(out, DType::bf16, s, "copy out");
      if (std::memcmp(got.view().data, want.view().data, bytes_of(want)) != 0) {
        return std::string(c.name) + ": out differs from the CPU's bits";
      }
      if (c.hunyuan && gpu_test::download_floats(dpooled.ptr, pooled_count, "copy pooled") != want_pooled) {
        return std::string(c.name) + ": pooled means differ from the CPU's bits";
      }
    }
    return "";
  }});

  // Shared layout buffer: a replaced slot throws "slot" from attend() and layout(); kept() still works.
  checks.push_back({"shared buffer: replaced slot", [&rng, spec, st, dy]() -> std::string {
    dr::SparseAttentionEngine cpu(engine_options(spec, dr::Device::cpu, 3, false));
    dr::SparseAttentionEngine gpu(engine_options(spec, dr::Device::cuda, 3, false));
    const HostQkv xa = make_qkv(rng, call_shape(gpu, 1), DType::f16);
    const HostQkv xb = make_qkv(rng, call_shape(gpu, 1), DType::f16);
    DeviceQkv da(xa), db(xb);
    Stream stream;
    std::string err = expect_error("slot", [&] { gpu.attend(da.args(true, stream.s), 0); });
    if (!err.empty()) return "attend before any select: " + err;
    err = expect_error("slot", [&] { gpu.kept(0, stream.s); });
    if (!err.empty()) return "kept before any select: " + err;
    gpu.select(da.tq(), da.tk(), st, 0, stream.s);
    const std::int64_t kept_a = gpu.kept(0, stream.s).kept;
    gpu.select(db.tq(), db.tk(), dy, 1, stream.s);
    err = expect_error("slot", [&] { gpu.attend(da.args(true, stream.s), 0); });
    if (!err.empty()) return "attend(0) after select(1): " + err;
    err = expect_error("slot", [&] { gpu.layout(0, stream.s); });
    if (!err.empty()) return "layout(0) after select(1): " + err;
    if (gpu.kept(0, stream.s).kept != kept_a) return "kept(0) changed after select(1)";
    err = expect_error("slot", [&] { gpu.kept(2, stream.s); });
    if (!err.empty()) return "kept(2), never selected: " + err;
    err = expect_error("slot", [&] { gpu.kept(3, stream.s); });
    if (!err.empty()) return "kept(3), out of range: " + err;
    err = expect_error("slot", [&] { gpu.select(da.tq(), da.tk(), st, -1, stream.s); });
    if (!err.empty()) return "select(-1): " + err;
    cpu.select(xb.q.view(), xb.k.view(), dy, 1);
    const dr::BlockLayout want_b = cpu.layout(1);
    const std::string diff = layout_difference(gpu.layout(1, stream.s), want_b);
    if (!diff.empty()) return "slot 1: " + diff;
    if (gpu.kept(1, stream.s).kept != want_b.row_offsets.back()) return "kept(1) differs from the layout";
    // The failed attend(0) wrote nothing.
    check(cudaStreamSynchronize(stream.s), "sync");
    if (nonfinite_outputs(da) != da.shape.elements()) return "a failed attend() wrote outputs";
    gpu.attend(db.args(true, stream.s), 1);
    check(cudaStreamSynchronize(stream.s), "attend");
    const OutputCheck o = check_output(xb, db, want_b, true);
    return o.ok ? "" : "slot 1: " + describe(o);
  }});

  // The batch changes between calls (shared buffer): each attend uses its own batch's layout.
  checks.push_back({"batch 2 then 1 on one slot", [&rng, spec64, st]() -> std::string {
    dr::SparseAttentionEngine cpu(engine_options(spec64, dr::Device::cpu));
    dr::SparseAttentionEngine gpu(engine_options(spec64, dr::Device::cuda));
    const HostQkv x2 = make_qkv(rng, call_shape(gpu, 2), DType::bf16);
    const HostQkv x1 = make_qkv(rng, call_shape(gpu, 1), DType::bf16);
    DeviceQkv d2(x2), d1(x1);
    Stream stream;
    gpu.select(d2.tq(), d2.tk(), st, 0, stream.s);
    std::string err = expect_error("q", [&] { gpu.attend(d1.args(true, stream.s), 0); });
    if (!err.empty()) return "batch 1 attend on a batch 2 layout: " + err;
    gpu.attend(d2.args(true, stream.s), 0);
    check(cudaStreamSynchronize(stream.s), "attend");
    cpu.select(x2.q.view(), x2.k.view(), st, 0);
    OutputCheck o = check_output(x2, d2, cpu.layout(0), true);
    if (!o.ok) return "batch 2: " + describe(o);
    gpu.select(d1.tq(), d1.tk(), st, 0, stream.s);
    err = expect_error("q", [&] { gpu.attend(d2.args(true, stream.s), 0); });
    if (!err.empty()) return "batch 2 attend on a batch 1 layout: " + err;
    gpu.attend(d1.args(true, stream.s), 0);
    check(cudaStreamSynchronize(stream.s), "attend");
    cpu.select(x1.q.view(), x1.k.view(), st, 0);
    const std::string diff = layout_difference(gpu.layout(0, stream.s), cpu.layout(0));
    if (!diff.empty()) return "batch 1: " + diff;
    o = check_output(x1, d1, cpu.layout(0), true);
    return o.ok ? "" : "batch 1: " + describe(o);
  }});

  // Selection from f32 Q and K (allowed on the CUDA engine) gives the CPU engine's layout.
  checks.push_back({"select from f32 Q/K", [&rng, spec, dy]() -> std::string {
    dr::SparseAttentionEngine cpu(engine_options(spec, dr::Device::cpu));
    dr::SparseAttentionEngine gpu(engine_options(spec, dr::Device::cuda));
    const HostQkv x16 = make_qkv(rng, call_shape(gpu, 2), DType::bf16);
    const HostQkv x32{converted(x16.q, DType::f32), converted(x16.k, DType::f32), converted(x16.v, DType::f32)};
    DeviceQkv d32(x32), d16(x16);
    Stream stream;
    gpu.select(d32.tq(), d32.tk(), dy, 0, stream.s);
    cpu.select(x32.q.view(), x32.k.view(), dy, 0);
    const dr::BlockLayout want = cpu.layout(0);
    const std::string diff = layout_difference(gpu.layout(0, stream.s), want);
    if (!diff.empty()) return diff;
    // attend() takes 16-bit tensors only.
    const std::string err = expect_error("q", [&] { gpu.attend(d32.args(true, stream.s), 0); });
    if (!err.empty()) return "f32 attend: " + err;
    gpu.attend(d16.args(true, stream.s), 0);
    check(cudaStreamSynchronize(stream.s), "attend");
    const OutputCheck o = check_output(x16, d16, want, true);
    return o.ok ? "" : describe(o);
  }});

  // Non-finite Q or K: the asynchronous status turns into Error("q" / "k") at kept() and layout().
  checks.push_back({"non-finite Q / K", [&rng, spec64, st]() -> std::string {
    dr::SparseAttentionEngine gpu(engine_options(spec64, dr::Device::cuda, 2, false));
    HostQkv x = make_qkv(rng, call_shape(gpu, 1), DType::f16);
    x.q.set(x.q.index(0, 100, 1, 5), std::numeric_limits<float>::quiet_NaN());
    DeviceQkv bad_q(x);
    HostQkv y = make_qkv(rng, call_shape(gpu, 1), DType::f16);
    y.k.set(y.k.index(0, 7, 0, 0), std::numeric_limits<float>::infinity());
    DeviceQkv bad_k(y);
    Stream stream;
    gpu.select(bad_q.tq(), bad_q.tk(), st, 0, stream.s);
    std::string err = expect_error("q", [&] { gpu.kept(0, stream.s); });
    if (!err.empty()) return "kept() after NaN in Q: " + err;
    err = expect_error("q", [&] { gpu.layout(0, stream.s); });
    if (!err.empty()) return "layout() after NaN in Q: " + err;
    gpu.select(bad_k.tq(), bad_k.tk(), st, 1, stream.s);
    err = expect_error("k", [&] { gpu.kept(1, stream.s); });
    if (!err.empty()) return "kept() after Inf in K: " + err;
    return "";
  }});

  // Bad options and call tensors.
  checks.push_back({"option errors", [spec]() -> std::string {
    const std::vector<std::pair<std::string, std::function<void(dr::EngineOptions&)>>> bad = {
        {"geometry.block_size", [](dr::EngineOptions& o) { o.geometry.block_size = 32; }},
        {"geometry.head_dim", [](dr::EngineOptions& o) { o.geometry.head_dim = 96; }},
        {"options.cuda_device", [](dr::EngineOptions& o) { o.cuda_device = 1000; }},
        {"options.slots", [](dr::EngineOptions& o) { o.slots = 0; }},
    };
    for (const auto& [field, change] : bad) {
      dr::EngineOptions o = engine_options(spec, dr::Device::cuda);
      change(o);
      const std::string err = expect_error(field, [&] { dr::SparseAttentionEngine e(o); });
      if (!err.empty()) return err;
    }
    return "";
  }});
  // device_bytes() counts the engine's own allocations: selection sizes the builder, the first
  // attend() of a batch its plan, and later calls of that batch allocate nothing at all.
  checks.push_back({"device_bytes: allocations, none per call", [&rng, spec, dy]() -> std::string {
    dr::SparseAttentionEngine gpu(engine_options(spec, dr::Device::cuda));
    const HostQkv x = make_qkv(rng, call_shape(gpu, 2), DType::bf16);
    DeviceQkv d(x);
    Stream stream;
    if (gpu.device_bytes() != 0) return "an unused engine holds " + std::to_string(gpu.device_bytes()) + " bytes";
    gpu.select(d.tq(), d.tk(), dy, 0, stream.s);
    const std::int64_t selected = gpu.device_bytes();
    gpu.attend(d.args(true, stream.s), 0);
    const std::int64_t planned = gpu.device_bytes();
    if (!(selected > 0 && planned > selected)) {
      return "bytes after select " + std::to_string(selected) + ", after attend " + std::to_string(planned);
    }
    check(cudaDeviceSynchronize(), "sync");
    std::size_t free_before = 0, free_after = 0, total = 0;
    check(cudaMemGetInfo(&free_before, &total), "cudaMemGetInfo");
    for (int i = 0; i < 3; ++i) {
      gpu.select(d.tq(), d.tk(), dy, 0, stream.s);
      gpu.attend(d.args(true, stream.s), 0);
    }
    check(cudaDeviceSynchronize(), "sync");
    check(cudaMemGetInfo(&free_after, &total), "cudaMemGetInfo");
    if (gpu.device_bytes() != planned) return "repeated calls changed device_bytes to " + std::to_string(gpu.device_bytes());
    if (free_after != free_before) {
      return "repeated calls moved the device's free memory by " +
             std::to_string(static_cast<long long>(free_before) - static_cast<long long>(free_after)) + " bytes";
    }
    return "";
  }});
  // Host memory handed to CUDA attention (a plan of its own, no engine) or to the CUDA rotary kernel
  // is an error naming the array, raised before any launch.
  checks.push_back({"host memory: attention plan, rotary", [&rng]() -> std::string {
    const dr::Shape shape = shape_of(1, 300, 2, 128);
    const HostQkv x = make_qkv(rng, shape, DType::bf16);
    DeviceQkv d(x);
    dr::HostTensor host(DType::bf16, shape);
    std::vector<float> host_floats(static_cast<std::size_t>(shape.tokens * shape.heads * shape.head_dim));
    dr::CudaAttentionOptions o;
    o.head_dim = 128;
    const std::unique_ptr<dr::CudaLayoutAttention> plan = dr::plan_cuda_layout_attention(shape, 128, o);
    const std::vector<std::pair<const char*, std::function<void(dr::AttentionArgs&)>>> attention = {
        {"q", [&](dr::AttentionArgs& a) { a.q.data = host.view().data; }},
        {"k", [&](dr::AttentionArgs& a) { a.k.data = host.view().data; }},
        {"v", [&](dr::AttentionArgs& a) { a.v.data = host.view().data; }},
        {"out", [&](dr::AttentionArgs& a) { a.out.data = host.mutable_view().data; }},
        {"lse", [&](dr::AttentionArgs& a) { a.lse = host_floats.data(); }},
    };
    for (const auto& [field, spoil] : attention) {
      dr::AttentionArgs a = d.args(true, nullptr);
      spoil(a);
      const std::string err = expect_error(field, [&] { plan->run_dense(a); });
      if (!err.empty()) return std::string("attention, host ") + field + ": " + err;
    }
    DeviceBuffer table(host_floats.size() * sizeof(float));
    check(cudaMemset(table.ptr, 0, host_floats.size() * sizeof(float)), "zero table");
    const std::vector<std::pair<const char*, std::function<void(dr::RotaryArgs&)>>> rotary = {
        {"x", [&](dr::RotaryArgs& r) { r.x.data = host.view().data; }},
        {"out", [&](dr::RotaryArgs& r) { r.out.data = host.mutable_view().data; }},
        {"cos", [&](dr::RotaryArgs& r) { r.cos = host_floats.data(); }},
        {"sin", [&](dr::RotaryArgs& r) { r.sin = host_floats.data(); }},
    };
    for (const auto& [field, spoil] : rotary) {
      dr::RotaryArgs r = rotary_args(d, table.ptr, table.ptr, nullptr);
      spoil(r);
      const std::string err = expect_error(field, [&] { dr::apply_rotary(r, dr::Device::cuda); });
      if (!err.empty()) return std::string("rotary, host ") + field + ": " + err;
    }
    return output_untouched(d);
  }});
  // Pinned (page-locked) host memory is host memory too: refused by selection and by an attention
  // plan, naming the tensor, like pageable memory.
  checks.push_back({"pinned host memory", [&rng, spec, st]() -> std::string {
    dr::SparseAttentionEngine gpu(engine_options(spec, dr::Device::cuda));
    const HostQkv x = make_qkv(rng, call_shape(gpu, 1), DType::bf16);
    DeviceQkv d(x);
    const gpu_test::PinnedBuffer pinned(bytes_of(x.q));
    dr::ConstTensor host_q = d.tq();
    host_q.data = pinned.ptr;
    std::string err = expect_error("q", [&] { gpu.select(host_q, d.tk(), st, 0, nullptr); });
    if (!err.empty()) return "select: " + err;
    dr::CudaAttentionOptions o;
    o.head_dim = d.shape.head_dim;
    const std::unique_ptr<dr::CudaLayoutAttention> plan =
        dr::plan_cuda_layout_attention(d.shape, static_cast<int>(gpu.options().geometry.block_size), o);
    dr::AttentionArgs a = d.args(true, nullptr);
    a.q.data = pinned.ptr;
    err = expect_error("q", [&] { plan->run_dense(a); });
    if (!err.empty()) return "attention plan: " + err;
    return output_untouched(d);
  }});
  // A standalone layout plan refuses a device layout or a q of another geometry than its own, and
  // holds at least its schedule (one int32 per row) on the device.
  checks.push_back({"layout plan: geometry errors, device_bytes", [&rng, spec, st]() -> std::string {
    const dr::EngineOptions options = engine_options(spec, dr::Device::cuda);
    const dr::VideoGeometry& g = options.geometry;
    const HostQkv x = make_qkv(rng, shape_of(1, dr::total_tokens(g), g.heads, g.head_dim), DType::bf16);
    DeviceQkv d(x);
    const dr::RadialPrior prior = dr::build_radial_prior(g, options.prior);
    dr::CudaMaskBuilder builder(prior, 1, g.heads, g.head_dim);
    builder.build(d.tq(), d.tk(), st, nullptr);
    dr::CudaAttentionOptions o;
    o.head_dim = g.head_dim;
    const std::unique_ptr<dr::CudaLayoutAttention> plan = dr::plan_cuda_layout_attention(d.shape, g.block_size, o);
    // more rows than the GPU has multiprocessors, so the schedule outweighs the per-CTA bounds
    for (const int block : {64, 128}) {
      const dr::Shape big = shape_of(2, 40 * block, 4, g.head_dim);
      const std::int64_t rows = big.batch * big.heads * 40;
      const std::int64_t bytes = dr::plan_cuda_layout_attention(big, block, o)->device_bytes();
      if (bytes < rows * static_cast<std::int64_t>(sizeof(std::int32_t))) {
        return "block " + std::to_string(block) + ": device_bytes " + std::to_string(bytes) + " < the " +
               std::to_string(rows) + "-row schedule";
      }
    }
    dr::DeviceLayoutView other_block = builder.device_layout();
    other_block.block_size = g.block_size == 128 ? 64 : 128;
    std::string err = expect_error("layout", [&] { plan->run(d.args(true, nullptr), other_block); });
    if (!err.empty()) return "layout of another block size: " + err;
    dr::AttentionArgs shorter = d.args(true, nullptr);
    for (dr::Shape* s : {&shorter.q.shape, &shorter.k.shape, &shorter.v.shape, &shorter.out.shape}) s->tokens -= 1;
    err = expect_error("q", [&] { plan->run(shorter, builder.device_layout()); });
    if (!err.empty()) return "q, k, v, out one token shorter than the plan: " + err;
    return output_untouched(d);
  }});
  // With keep_layouts, a slot's own copy of its layout counts in device_bytes(): one int64 row offset
  // per row plus one, one int32 column per kept block pair.
  checks.push_back({"device_bytes: kept layouts", [&rng, spec, dy]() -> std::string {
    dr::SparseAttentionEngine shared(engine_options(spec, dr::Device::cuda, 2, false));
    dr::SparseAttentionEngine keeping(engine_options(spec, dr::Device::cuda, 2, true));
    const HostQkv x = make_qkv(rng, call_shape(shared, 2), DType::bf16);
    DeviceQkv d(x);
    shared.select(d.tq(), d.tk(), dy, 0, nullptr);
    keeping.select(d.tq(), d.tk(), dy, 0, nullptr);
    const dr::VideoGeometry& g = shared.options().geometry;
    const std::int64_t rows = 2 * g.heads * dr::num_blocks(g);
    const std::int64_t kept = keeping.kept(0, nullptr).kept;
    const std::int64_t want = (rows + 1) * 8 + kept * 4;
    const std::int64_t got = keeping.device_bytes() - shared.device_bytes();
    if (got != want) {
      return "the kept layout counts " + std::to_string(got) + " bytes, want " + std::to_string(want) + " (" +
             std::to_string(rows) + " rows, " + std::to_string(kept) + " kept)";
    }
    return "";
  }});
  // A misaligned tensor is refused, naming it, on both kernels (the wgmma kernel's tensor maps would
  // also fail on it; the mma.sync kernel would read it misaligned).
  for (const GeometrySpec& s : {spec, spec64}) {
    checks.push_back({"misaligned tensors, block " + std::to_string(s.block), [&rng, s, st]() -> std::string {
      dr::SparseAttentionEngine gpu(engine_options(s, dr::Device::cuda));
      const HostQkv x = make_qkv(rng, call_shape(gpu, 1), DType::bf16);
      DeviceQkv d(x);
      gpu.select(d.tq(), d.tk(), st, 0, nullptr);
      // One tensor at a time moves 2 bytes into a spare buffer, 16 bytes longer than a tensor so that
      // it overlaps no other.
      DeviceBuffer spare(d.out_bytes() + 16);
      char* const misaligned = static_cast<char*>(spare.ptr) + 2;
      const std::vector<std::pair<const char*, std::function<void(dr::AttentionArgs&)>>> spoils = {
          {"q", [&](dr::AttentionArgs& a) { a.q.data = misaligned; }},
          {"k", [&](dr::AttentionArgs& a) { a.k.data = misaligned; }},
          {"v", [&](dr::AttentionArgs& a) { a.v.data = misaligned; }},
          {"out", [&](dr::AttentionArgs& a) { a.out.data = misaligned; }},
      };
      for (const auto& [which, spoil] : spoils) {
        dr::AttentionArgs a = d.args(true, nullptr);
        spoil(a);
        std::string err = expect_error(which, [&] { gpu.attend(a, 0); });
        if (!err.empty()) return std::string("attend, misaligned ") + which + ": " + err;
        err = expect_error(which, [&] { gpu.attend_dense(a); });
        if (!err.empty()) return std::string("attend_dense, misaligned ") + which + ": " + err;
      }
      return output_untouched(d);
    }});
  }
  checks.push_back({"call errors", [&rng, spec, st]() -> std::string {
    dr::SparseAttentionEngine gpu(engine_options(spec, dr::Device::cuda));
    const HostQkv x = make_qkv(rng, call_shape(gpu, 1), DType::bf16);
    DeviceQkv d(x);
    Stream stream;
    dr::ConstTensor q = d.tq(), k = d.tk();
    dr::ConstTensor fewer = q;
    fewer.shape.tokens -= 1;
    dr::ConstTensor heads = q;
    heads.shape.heads += 1;
    dr::ConstTensor k_f16 = k;
    k_f16.dtype = DType::f16;
    dr::ConstTensor wide = q;  // more batch elements than a grid dimension holds (refused before any read)
    wide.shape.batch = 65536;
    dr::SelectionParams bad_r = st;
    bad_r.r_near = 1.5;
    const std::vector<std::pair<std::string, std::function<void()>>> calls = {
        {"q", [&] { gpu.select(fewer, fewer, st, 0, stream.s); }},
        {"q", [&] { gpu.select(heads, heads, st, 0, stream.s); }},
        {"k", [&] { gpu.select(q, fewer, st, 0, stream.s); }},
        {"k", [&] { gpu.select(q, k_f16, st, 0, stream.s); }},
        {"selection.r_near", [&] { gpu.select(q, k, bad_r, 0, stream.s); }},
        {"q", [&] { gpu.select(x.q.view(), x.k.view(), st, 0, stream.s); }},  // host memory
        {"k", [&] { gpu.select(q, x.k.view(), st, 0, stream.s); }},           // host k only
        {"slot", [&] { gpu.select(q, k, st, 1, stream.s); }},
        {"q.batch", [&] { gpu.select(wide, wide, st, 0, stream.s); }},
    };
    for (const auto& [field, call] : calls) {
      const std::string err = expect_error(field, call);
      if (!err.empty()) return err;
    }
    gpu.select(q, k, st, 0, stream.s);
    dr::AttentionArgs a = d.args(true, stream.s);
    a.v.shape.heads += 1;
    std::string err = expect_error("v", [&] { gpu.attend(a, 0); });
    if (!err.empty()) return err;
    a = d.args(true, stream.s);
    a.out.dtype = DType::f16;
    err = expect_error("out", [&] { gpu.attend(a, 0); });
    if (!err.empty()) return err;
    a = d.args(true, stream.s);
    a.v = x.v.view();  // host memory
    err = expect_error("v", [&] { gpu.attend(a, 0); });
    if (!err.empty()) return "host v: " + err;
    a = d.args(true, stream.s);
    a.q.data = static_cast<const char*>(a.q.data) + 2;  // misaligned
    err = expect_error("q", [&] { gpu.attend(a, 0); });
    if (!err.empty()) return err;
    // k or v in the other 16-bit type: refused, not read as q's type (sparse and dense paths)
    for (const char* which : {"k", "v"}) {
      a = d.args(true, stream.s);
      (std::string(which) == "k" ? a.k : a.v).dtype = DType::f16;
      err = expect_error(which, [&] { gpu.attend(a, 0); });
      if (!err.empty()) return std::string("attend, ") + which + " f16: " + err;
      err = expect_error(which, [&] { gpu.attend_dense(a); });
      if (!err.empty()) return std::string("attend_dense, ") + which + " f16: " + err;
    }
    // out written over v (rows still read it) is refused; out over q is allowed
    a = d.args(true, stream.s);
    a.out.data = const_cast<void*>(a.v.data);
    err = expect_error("out", [&] { gpu.attend(a, 0); });
    if (!err.empty()) return "out over v: " + err;
    err = expect_error("out", [&] { gpu.attend_dense(a); });
    if (!err.empty()) return "attend_dense, out over v: " + err;
    // out written over q itself: the same bits as into a separate out (each row reads its own
    // queries before it writes them)
    a = d.args(true, stream.s);
    gpu.attend(a, 0);
    std::vector<char> want(d.out_bytes()), got(d.out_bytes());
    check(cudaMemcpyAsync(want.data(), d.out.ptr, want.size(), cudaMemcpyDeviceToHost, stream.s), "copy out");
    DeviceBuffer in_place(d.out_bytes());
    check(cudaMemcpyAsync(in_place.ptr, d.q.ptr, d.out_bytes(), cudaMemcpyDeviceToDevice, stream.s), "copy q");
    a.q.data = in_place.ptr;
    a.out.data = in_place.ptr;
    gpu.attend(a, 0);
    check(cudaMemcpyAsync(got.data(), in_place.ptr, got.size(), cudaMemcpyDeviceToHost, stream.s), "copy in place");
    check(cudaStreamSynchronize(stream.s), "sync");
    if (want != got) return "out over q differs from a separate out";
    return "";
  }});

  // An engine on device 1 while device 0 is current: every call runs on device 1 and leaves device
  // 0 current; the results equal an engine's on device 0; tensors of the other device are refused;
  // and the engine's teardown, with device 0 current, returns every byte of device 1.
  int devices = 0;
  check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  if (devices >= 2) {
    checks.push_back({"device 1 while device 0 is current", [&rng, spec, dy]() -> std::string {
      check(cudaSetDevice(0), "cudaSetDevice");
      dr::EngineOptions on0 = engine_options(spec, dr::Device::cuda);
      on0.cuda_device = 0;
      dr::EngineOptions on1 = on0;
      on1.cuda_device = 1;
      dr::SparseAttentionEngine cpu(engine_options(spec, dr::Device::cpu));
      const HostQkv x = make_qkv(rng, call_shape(cpu, 2), DType::bf16);
      cpu.select(x.q.view(), x.k.view(), dy, 0);
      const dr::BlockLayout want = cpu.layout(0);
      DeviceQkv d0(x);
      Stream s0;
      std::unique_ptr<DeviceQkv> d1;
      std::unique_ptr<Stream> s1;
      {
        gpu_test::CurrentDevice on(1);
        d1 = std::make_unique<DeviceQkv>(x);
        s1 = std::make_unique<Stream>();
      }
      auto current = [] {
        int c = -1;
        check(cudaGetDevice(&c), "cudaGetDevice");
        return c;
      };
      auto run = [&](dr::SparseAttentionEngine& e, const DeviceQkv& d, cudaStream_t s) {
        e.select(d.tq(), d.tk(), dy, 0, s);
        e.attend(d.args(true, s), 0);
        check(cudaStreamSynchronize(s), "attend");
      };
      std::int64_t bytes0 = 0;
      {
        dr::SparseAttentionEngine gpu0(on0);
        run(gpu0, d0, s0.s);
        bytes0 = gpu0.device_bytes();
      }
      const auto free_on_1 = [] {
        gpu_test::CurrentDevice on(1);
        std::size_t free = 0, total = 0;
        check(cudaDeviceSynchronize(), "sync device 1");
        check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
        return free;
      };
      for (int round = 0; round < 2; ++round) {  // round 0 also loads device 1's kernels
        {
          gpu_test::CurrentDevice on(1);
          d1->poison();
        }
        const std::size_t free_before = free_on_1();
        {
          dr::SparseAttentionEngine gpu1(on1);
          if (current() != 0) return "the constructor left device " + std::to_string(current()) + " current";
          run(gpu1, *d1, s1->s);
          if (current() != 0) return "select / attend left device " + std::to_string(current()) + " current";
          std::string diff = layout_difference(gpu1.layout(0, s1->s), want);
          if (!diff.empty()) return "layout: " + diff;
          if (gpu1.kept(0, s1->s).kept != want.row_offsets.back()) return "kept(0) differs from the layout";
          if (gpu1.device_bytes() != bytes0) {
            return "device_bytes " + std::to_string(gpu1.device_bytes()) + " on device 1, " + std::to_string(bytes0) +
                   " on device 0";
          }
          std::string err = expect_error("q", [&] { gpu1.select(d0.tq(), d0.tk(), dy, 0, s1->s); });
          if (!err.empty()) return "device 0 tensors: " + err;
          if (current() != 0) return "layout / kept / errors left device " + std::to_string(current()) + " current";
        }
        if (current() != 0) return "the destructor left device " + std::to_string(current()) + " current";
        check(cudaGetLastError(), "after the destructor");
        const std::size_t free_after = free_on_1();
        if (round == 1 && free_after != free_before) {
          return "the engine's teardown left " +
                 std::to_string(static_cast<long long>(free_before) - static_cast<long long>(free_after)) +
                 " bytes of device 1 allocated";
        }
      }
      const auto same_outputs = [&](const char* what) -> std::string {
        gpu_test::CurrentDevice on(1);
        const dr::HostTensor out1 = gpu_test::download(d1->out.ptr, d1->dtype, d1->shape, "copy out");
        const dr::HostTensor out0 = gpu_test::download(d0.out.ptr, d0.dtype, d0.shape, "copy out");
        for (std::int64_t i = 0; i < out0.shape().elements(); ++i) {
          if (!(out0.get(i) == out1.get(i))) {
            return std::string(what) + ": device 1's output differs from device 0's at element " + std::to_string(i);
          }
        }
        return "";
      };
      {
        gpu_test::CurrentDevice on(1);
        const OutputCheck o = check_output(x, *d1, want, true);
        if (!o.ok) return describe(o);
      }
      std::string diff = same_outputs("attention");
      if (!diff.empty()) return diff;
      // The rotary kernel on device 1's tensors and stream runs there and gives device 0's bits.
      const std::size_t table_bytes = static_cast<std::size_t>(x.q.shape().tokens * x.q.shape().head_dim) * sizeof(float);
      dr::HostTensor table(DType::f32, shape_of(1, x.q.shape().tokens, 1, x.q.shape().head_dim));
      for (std::int64_t i = 0; i < table.shape().elements(); ++i) table.set(i, static_cast<float>(rng.normal()));
      DeviceBuffer table0(table_bytes);
      gpu_test::upload(table0.ptr, table, "copy table");
      std::unique_ptr<DeviceBuffer> table1;
      {
        gpu_test::CurrentDevice on(1);
        table1 = std::make_unique<DeviceBuffer>(table_bytes);
        gpu_test::upload(table1->ptr, table, "copy table");
      }
      dr::apply_rotary(rotary_args(d0, table0.ptr, table0.ptr, s0.s), dr::Device::cuda);
      dr::apply_rotary(rotary_args(*d1, table1->ptr, table1->ptr, s1->s), dr::Device::cuda);
      if (current() != 0) return "apply_rotary left device " + std::to_string(current()) + " current";
      check(cudaStreamSynchronize(s0.s), "rotary on device 0");
      {
        gpu_test::CurrentDevice on(1);
        check(cudaStreamSynchronize(s1->s), "rotary on device 1");
      }
      const std::string err = expect_error(
          "cos", [&] { dr::apply_rotary(rotary_args(*d1, table0.ptr, table1->ptr, s1->s), dr::Device::cuda); });
      if (!err.empty()) return "a device 0 table with device 1 tensors: " + err;
      return same_outputs("rotary");
    }});
  } else {
    std::printf("  (one CUDA device: the check of an engine on device 1 is skipped)\n");
  }
  return checks;
}

const char* to_cstr(dr::SelectionMode m) { return m == dr::SelectionMode::static_ratio ? "static" : "dynamic"; }

void print_row(std::size_t i, const Case& c, const CaseResult& r) {
  const GeometrySpec& g = c.geometry;
  const std::string text =
      g.text == 0 ? "-" : (g.placement == dr::TextPlacement::prefix ? "p" : "s") + std::to_string(g.text);
  std::printf("%-3zu %-5s %5d %4lld %2lld %2lld %5lld %-7s %-4s %-7s %-7s %3s %7.3f %10.2e %10.2e %6s  %s\n", i,
              dr::to_string(c.dtype).c_str(), g.block, static_cast<long long>(g.head_dim),
              static_cast<long long>(c.batch), static_cast<long long>(g.heads), static_cast<long long>(r.tokens),
              dr::to_string(g.order).c_str(), text.c_str(), to_cstr(c.mode), g.sink ? "sink" : "-",
              c.lse ? "yes" : "no", r.density, r.out.rel_l2, r.out.lse_err, r.ok ? "ok" : "FAIL", r.note.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  gpu_test::CommandLine cl{false, 20261127, ""};
  if (!gpu_test::start_program(argc, argv, false, "[--quick] [--seed N]", cl)) return 2;

  Rng rng(cl.seed);
  std::printf("\n%-3s %-5s %5s %4s %2s %2s %5s %-7s %-4s %-7s %-7s %3s %7s %10s %10s %6s  %s\n", "#", "dtype", "block",
              "dim", "B", "H", "T", "order", "text", "mode", "sink", "lse", "density", "rel_l2", "lse_err", "status",
              "note");
  const std::vector<Case> cases = build_cases(cl.quick);
  int failures = gpu_test::run_cases<CaseResult>(cases, [&](const Case& c) { return run_case(c, rng); }, print_row);

  std::printf("\nSlots and errors:\n");
  const std::vector<Check> checks = build_checks(rng);
  for (const Check& chk : checks) {
    std::string problem;
    gpu_test::run_noting_exception([&] { problem = chk.body(); }, problem);
    failures += problem.empty() ? 0 : 1;
    std::printf("  %-40s %s%s%s\n", chk.name.c_str(), problem.empty() ? "ok" : "FAIL", problem.empty() ? "" : ": ",
                problem.c_str());
    std::fflush(stdout);
  }

  std::printf("\n%zu cases and %zu checks, %d failed (tolerance: rel_l2 < %.0e bf16, %.0e f16; lse_err <= %.0e)\n",
              cases.size(), checks.size(), failures, tolerance(dr::DType::bf16), tolerance(dr::DType::f16),
              kLseTolerance);
  return failures == 0 ? 0 : 1;
}
