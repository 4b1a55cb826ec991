// Tests for engine.h on the CPU: select() + attend() against the oracle (attention_reference with the
// engine's own layout), the layout against pool_blocks + select_blocks, kept-block counts, a
// density-1 configuration against dense attention, slot semantics (shared buffer and keep_layouts),
// batch changes, and the errors every bad input must raise (each naming its field).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dynamicrad/attention.h"
#include "dynamicrad/device.h"
#include "dynamicrad/engine.h"
#include "dynamicrad/error.h"
#include "dynamicrad/geometry.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"
#include "dynamicrad/tensor.h"
#include "pooled_support.h"
#include "test_support.h"

namespace dr = dynamicrad;
using dr_test::describe;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Qkv {
  dr::HostTensor q, k, v;
};

// Q and K with block-scale structure (a few per-head directions that change every 24 tokens, plus
// noise), so that pooled block scores spread out and both selection modes drop candidates; V is
// plain N(0, 1). Rounded to `dtype`.
Qkv structured_qkv(dr_test::Rng& rng, const dr::Shape& s, dr::DType dtype) {
  constexpr int kDirections = 6;
  std::vector<float> dirs(static_cast<std::size_t>(2 * kDirections * s.heads * s.head_dim));
  for (float& x : dirs) x = static_cast<float>(1.5 * rng.normal());
  Qkv x{dr::HostTensor(dtype, s), dr::HostTensor(dtype, s), dr_test::random_tensor(rng, s, 1.0, dtype)};
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
        }
    }
  return x;
}

dr::VideoGeometry video(std::int64_t frames, std::int64_t height, std::int64_t width, int block, std::int64_t heads,
                        std::int64_t head_dim) {
  dr::VideoGeometry g;
  g.frames = frames;
  g.height = height;
  g.width = width;
  g.block_size = block;
  g.heads = heads;
  g.head_dim = head_dim;
  return g;
}

dr::VideoGeometry with_text(dr::VideoGeometry g, std::int64_t text, dr::TextPlacement placement) {
  g.text_tokens = text;
  g.text_placement = placement;
  return g;
}

dr::VideoGeometry tiled(dr::VideoGeometry g) {
  g.order = dr::TokenOrder::tiled3d;
  return g;
}

// gamma 1 without the frame-0 sink: these small videos then have near and far candidates.
dr::RadialPriorParams prior_params() {
  dr::RadialPriorParams p;
  p.gamma = 1.0;
  p.first_frame_sink = false;
  return p;
}

dr::SelectionParams static_ratio(double r_near = 0.5, double r_far = 0.3) {
  dr::SelectionParams p;
  p.mode = dr::SelectionMode::static_ratio;
  p.r_near = r_near;
  p.r_far = r_far;
  return p;
}

dr::SelectionParams dynamic_threshold(double tau_near = 0.03, double tau_far = 0.06) {
  dr::SelectionParams p;
  p.mode = dr::SelectionMode::dynamic_threshold;
  p.tau_near = tau_near;
  p.tau_far = tau_far;
  return p;
}

dr::EngineOptions engine_options(const dr::VideoGeometry& g, const dr::RadialPriorParams& prior = prior_params(),
                                 int slots = 1, bool keep_layouts = false) {
  dr::EngineOptions o;
  o.geometry = g;
  o.prior = prior;
  o.device = dr::Device::cpu;
  o.slots = slots;
  o.keep_layouts = keep_layouts;
  o.threads = 2;
  return o;
}

dr::Shape call_shape(const dr::VideoGeometry& g, std::int64_t batch) {
  return dr_test::make_shape(batch, dr::total_tokens(g), g.heads, g.head_dim);
}

// The layout select_blocks() gives on the same inputs (what the engine must reproduce).
dr::BlockLayout expected_layout(const dr::SparseAttentionEngine& engine, const Qkv& x,
                                const dr::SelectionParams& params) {
  dr::VideoGeometry g = engine.prior().geometry;
  g.batch = x.q.shape().batch;
  return dr::select_blocks(engine.prior(), dr::pool_blocks(x.q.view(), x.k.view(), g), params);
}

void expect_same_layout(const dr::BlockLayout& got, const dr::BlockLayout& want, const std::string& what) {
  EXPECT_EQ(got.batch, want.batch) << what;
  EXPECT_EQ(got.heads, want.heads) << what;
  EXPECT_EQ(got.tokens, want.tokens) << what;
  EXPECT_EQ(got.block_size, want.block_size) << what;
  EXPECT_EQ(got.blocks, want.blocks) << what;
  EXPECT_EQ(got.row_offsets, want.row_offsets) << what << ": row_offsets differ";
  EXPECT_EQ(got.col_indices, want.col_indices) << what << ": col_indices differ";
}

bool same_layout(const dr::BlockLayout& a, const dr::BlockLayout& b) {
  return a.batch == b.batch && a.heads == b.heads && a.tokens == b.tokens && a.block_size == b.block_size &&
         a.blocks == b.blocks && a.row_offsets == b.row_offsets && a.col_indices == b.col_indices;
}

// An attention output poisoned with NaN (out and lse), so unwritten elements show.
struct Output {
  dr::HostTensor out;
  std::vector<float> lse;
};

Output poisoned(const dr::Shape& s, dr::DType dtype = dr::DType::f32) {
  Output o{dr::HostTensor(dtype, s), std::vector<float>(static_cast<std::size_t>(s.batch * s.heads * s.tokens), kNaN)};
  dr_test::fill(o.out, kNaN);
  return o;
}

dr::AttentionArgs args_for(const Qkv& x, Output& o, bool lse = true) {
  dr::AttentionArgs a;
  a.q = x.q.view();
  a.k = x.k.view();
  a.v = x.v.view();
  a.out = o.out.mutable_view();
  a.lse = lse ? o.lse.data() : nullptr;
  return a;
}

Output run_engine(const dr::SparseAttentionEngine& engine, const Qkv& x, int slot, bool lse = true,
                  dr::DType out_dtype = dr::DType::f32) {
  Output o = poisoned(x.q.shape(), out_dtype);
  engine.attend(args_for(x, o, lse), slot);
  return o;
}

Output run_reference(const Qkv& x, double scale, const dr::BlockLayout* layout) {
  Output o = poisoned(x.q.shape());
  dr::AttentionOptions opts;
  opts.scale = scale;
  opts.threads = 2;
  dr::attention_reference(args_for(x, o), opts, layout);
  return o;
}

struct Comparison {
  double rel_l2 = 0.0;
  double max_abs = 0.0;
  double lse_max_abs = 0.0;
  std::int64_t non_finite = 0;      // non-finite outputs
  std::int64_t lse_non_finite = 0;  // non-finite lse values (no row is empty, so none may be)
};

Comparison compare(const Output& got, const Output& want, bool with_lse) {
  Comparison c;
  double err2 = 0.0, ref2 = 0.0;
  for (std::int64_t i = 0; i < got.out.shape().elements(); ++i) {
    const double g = got.out.get(i), w = want.out.get(i);
    if (!std::isfinite(g)) {
      ++c.non_finite;
      continue;
    }
    err2 += (g - w) * (g - w);
    ref2 += w * w;
    c.max_abs = std::max(c.max_abs, std::fabs(g - w));
  }
  c.rel_l2 = ref2 > 0.0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  if (with_lse) {
    for (std::size_t i = 0; i < got.lse.size(); ++i) {
      if (!std::isfinite(got.lse[i]) || !std::isfinite(want.lse[i])) {
        ++c.lse_non_finite;
        continue;
      }
      c.lse_max_abs = std::max(c.lse_max_abs, std::fabs(static_cast<double>(got.lse[i]) - want.lse[i]));
    }
  }
  return c;
}

// fp32 online softmax against the double oracle, f32 output.
constexpr double kRelL2 = 1e-5;
constexpr double kMaxAbs = 1e-4;
constexpr double kLseAbs = 1e-4;

void expect_matches(const Output& got, const Output& want, bool with_lse, const std::string& what,
                    double rel_l2 = kRelL2, double max_abs = kMaxAbs) {
  const Comparison c = compare(got, want, with_lse);
  EXPECT_EQ(c.non_finite, 0) << what << ": outputs left unwritten (NaN) or non-finite";
  EXPECT_LE(c.rel_l2, rel_l2) << what;
  EXPECT_LE(c.max_abs, max_abs) << what;
  if (with_lse) {
    EXPECT_EQ(c.lse_non_finite, 0) << what << ": lse left unwritten (NaN) or non-finite";
    EXPECT_LE(c.lse_max_abs, kLseAbs) << what;
  } else {
    // Without an lse buffer the poisoned one stays untouched.
    for (float v : got.lse) ASSERT_TRUE(std::isnan(v)) << what << ": lse written although args.lse was null";
  }
}

std::string mode_name(const dr::SelectionParams& p) { return dr::to_string(p.mode); }

std::unique_ptr<dr::SparseAttentionEngine> make_engine(const dr::EngineOptions& o) {
  return std::make_unique<dr::SparseAttentionEngine>(o);
}

}  // namespace

// The full pipeline on many small geometries: odd token counts, text prefix and suffix, both token
// orders, block 32 / 64 / 128, f32 / bf16 / f16 inputs, batch 1 and 2, both selection modes.
TEST(Engine, SelectAttendMatchesReferenceWithItsLayout) {
  dr_test::Rng rng(101);
  const std::vector<dr::VideoGeometry> geometries = {
      // 8 x 6 x 9 video + 11 text suffix = 443 tokens (14 blocks of 32, the last short).
      with_text(video(8, 6, 9, 32, 2, 16), 11, dr::TextPlacement::suffix),
      // tiled3d, 5 x 10 x 13 = 650 tokens, block 64: partial tiles at every edge.
      tiled(video(5, 10, 13, 64, 3, 8)),
      // tiled3d with a text suffix, block 32 (1x4x8 tiles).
      tiled(with_text(video(6, 7, 11, 32, 2, 16), 9, dr::TextPlacement::suffix)),
      // block 128, 5 x 12 x 16 video + 19 text suffix = 979 tokens.
      with_text(video(5, 12, 16, 128, 1, 16), 19, dr::TextPlacement::suffix),
      // a text prefix: 7 + 6 x 6 x 9 = 331 tokens.
      with_text(video(6, 6, 9, 32, 1, 8), 7, dr::TextPlacement::prefix),
  };
  const std::vector<dr::DType> dtypes = {dr::DType::f32, dr::DType::bf16, dr::DType::f16};
  std::int64_t kept_total = 0, dense_total = 0;
  int runs = 0;
  for (std::size_t gi = 0; gi < geometries.size(); ++gi) {
    const dr::VideoGeometry& g = geometries[gi];
    const auto engine = make_engine(engine_options(g));
    ASSERT_EQ(engine->tokens(), dr::total_tokens(g));
    EXPECT_EQ(engine->device_bytes(), 0);
    for (const dr::SelectionParams& sel : {static_ratio(), dynamic_threshold()}) {
      for (std::int64_t batch : {1, 2}) {
        const dr::DType dtype = dtypes[static_cast<std::size_t>(runs++) % dtypes.size()];
        const std::string what = describe(g) + " " + mode_name(sel) + " " + dr::to_string(dtype) + " batch " +
                                 std::to_string(batch);
        SCOPED_TRACE(what);
        const Qkv x = structured_qkv(rng, call_shape(g, batch), dtype);
        engine->select(x.q.view(), x.k.view(), sel, 0);
        const dr::BlockLayout layout = engine->layout(0);
        ASSERT_NO_THROW(dr::validate(layout));
        expect_same_layout(layout, expected_layout(*engine, x, sel), what);

        const dr::KeptBlocks kept = engine->kept(0);
        EXPECT_EQ(kept.kept, layout.row_offsets.back());
        EXPECT_EQ(kept.kept, layout.kept());
        EXPECT_EQ(kept.total, batch * g.heads * layout.blocks * layout.blocks);
        EXPECT_DOUBLE_EQ(kept.density() + kept.sparsity(), 1.0);
        kept_total += kept.kept;
        dense_total += kept.total;

        const bool lse = runs % 4 < 2;  // with and without lse, in both batches
        const Output got = run_engine(*engine, x, 0, lse);
        const Output want = run_reference(x, 0.0, &layout);
        expect_matches(got, want, lse, what);
      }
    }
  }
  // The cases must actually be sparse, or the comparison with the layout proves little.
  EXPECT_LT(static_cast<double>(kept_total), 0.9 * static_cast<double>(dense_total));
}

// Each selection mode, on its own, drops blocks on these inputs (so both paths are exercised).
TEST(Engine, BothModesDropCandidates) {
  dr_test::Rng rng(102);
  const dr::VideoGeometry g = with_text(video(8, 6, 9, 32, 2, 16), 11, dr::TextPlacement::suffix);
  const auto engine = make_engine(engine_options(g));
  const dr::BlockLayout prior_only = dr::layout_from_prior(engine->prior(), 1, g.heads);
  const Qkv x = structured_qkv(rng, call_shape(g, 1), dr::DType::f32);
  for (const dr::SelectionParams& sel : {static_ratio(), dynamic_threshold()}) {
    SCOPED_TRACE(mode_name(sel));
    engine->select(x.q.view(), x.k.view(), sel, 0);
    const dr::KeptBlocks kept = engine->kept(0);
    EXPECT_LT(kept.kept, prior_only.kept()) << "selection kept the whole prior";
    EXPECT_GT(kept.kept, 0);
  }
}

// Half-precision outputs are written in their own format (within half an ulp of the f32 result).
TEST(Engine, HalfPrecisionOutput) {
  dr_test::Rng rng(103);
  const dr::VideoGeometry g = tiled(with_text(video(4, 6, 10, 64, 2, 32), 5, dr::TextPlacement::suffix));
  const auto engine = make_engine(engine_options(g));
  for (dr::DType dtype : {dr::DType::bf16, dr::DType::f16}) {
    SCOPED_TRACE(dr::to_string(dtype));
    const Qkv x = structured_qkv(rng, call_shape(g, 2), dtype);
    engine->select(x.q.view(), x.k.view(), static_ratio(), 0);
    const dr::BlockLayout layout = engine->layout(0);
    const Output got = run_engine(*engine, x, 0, true, dtype);
    EXPECT_EQ(got.out.dtype(), dtype);
    const Output want = run_reference(x, 0.0, &layout);
    const double ulp = dtype == dr::DType::bf16 ? 0x1.0p-8 : 0x1.0p-11;
    expect_matches(got, want, true, "half output", ulp, 4.0 * ulp);
  }
}

// options.scale replaces 1 / sqrt(head_dim); the thread count does not change the bits.
TEST(Engine, ScaleAndThreadsOptions) {
  dr_test::Rng rng(104);
  const dr::VideoGeometry g = with_text(video(5, 5, 9, 32, 2, 16), 6, dr::TextPlacement::suffix);
  const Qkv x = structured_qkv(rng, call_shape(g, 2), dr::DType::f32);
  dr::EngineOptions o = engine_options(g);
  o.scale = 0.37;
  o.threads = 1;
  const auto one = make_engine(o);
  o.threads = 3;
  const auto three = make_engine(o);
  one->select(x.q.view(), x.k.view(), dynamic_threshold(), 0);
  three->select(x.q.view(), x.k.view(), dynamic_threshold(), 0);
  const dr::BlockLayout layout = one->layout(0);
  expect_same_layout(three->layout(0), layout, "threads 3 vs 1");
  const Output a = run_engine(*one, x, 0);
  const Output b = run_engine(*three, x, 0);
  expect_matches(a, run_reference(x, 0.37, &layout), true, "scale 0.37");
  EXPECT_EQ(std::memcmp(a.out.view().data, b.out.view().data,
                        static_cast<std::size_t>(x.q.shape().elements()) * sizeof(float)),
            0);
  EXPECT_EQ(std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float)), 0);
  // The default scale would give another result.
  const Output def = run_reference(x, 0.0, &layout);
  EXPECT_GT(compare(a, def, false).max_abs, 1e-3);
}

// A prior and selection that keep everything: attend() is dense attention.
TEST(Engine, DensityOneEqualsDenseAttention) {
  dr_test::Rng rng(105);
  dr::RadialPriorParams prior;
  prior.gamma = 16.0;
  prior.theta_m = 0.0;
  prior.theta_c = 0.0;
  const std::vector<dr::VideoGeometry> geometries = {
      with_text(video(3, 7, 9, 32, 2, 16), 13, dr::TextPlacement::suffix),
      tiled(video(2, 9, 11, 64, 1, 32)),
      video(4, 5, 7, 128, 2, 8),
  };
  for (const dr::VideoGeometry& g : geometries) {
    SCOPED_TRACE(describe(g));
    const auto engine = make_engine(engine_options(g, prior));
    for (std::int64_t batch : {1, 2}) {
      const Qkv x = structured_qkv(rng, call_shape(g, batch), dr::DType::f32);
      engine->select(x.q.view(), x.k.view(), static_ratio(1.0, 1.0), 0);
      const dr::KeptBlocks kept = engine->kept(0);
      const dr::BlockLayout layout = engine->layout(0);
      EXPECT_EQ(kept.kept, kept.total);
      EXPECT_EQ(kept.total, batch * g.heads * layout.blocks * layout.blocks);
      EXPECT_DOUBLE_EQ(kept.density(), 1.0);
      expect_same_layout(layout, dr::full_layout(batch, g.heads, dr::total_tokens(g), g.block_size), "full");
      expect_matches(run_engine(*engine, x, 0), run_reference(x, 0.0, nullptr), true, "density 1 vs dense");
    }
  }
}

// keep_layouts off: one shared layout; attend/layout on a replaced slot throw "slot", kept() works.
TEST(Engine, SharedLayoutBufferReplacesSlots) {
  dr_test::Rng rng(106);
  const dr::VideoGeometry g = tiled(with_text(video(6, 6, 8, 32, 2, 16), 10, dr::TextPlacement::suffix));
  const auto engine = make_engine(engine_options(g, prior_params(), 3, false));
  const Qkv a = structured_qkv(rng, call_shape(g, 1), dr::DType::f32);
  const Qkv b = structured_qkv(rng, call_shape(g, 1), dr::DType::f32);

  // Nothing selected yet.
  {
    Output o = poisoned(a.q.shape());
    EXPECT_DR_FIELD(engine->attend(args_for(a, o), 0), "slot");
    EXPECT_DR_FIELD(engine->layout(0), "slot");
    EXPECT_DR_FIELD(engine->kept(0), "slot");
  }

  engine->select(a.q.view(), a.k.view(), static_ratio(), 0);
  const dr::KeptBlocks kept_a = engine->kept(0);
  const dr::BlockLayout layout_a = engine->layout(0);
  expect_same_layout(layout_a, expected_layout(*engine, a, static_ratio()), "slot 0");
  expect_matches(run_engine(*engine, a, 0), run_reference(a, 0.0, &layout_a), true, "slot 0 before replacement");

  engine->select(b.q.view(), b.k.view(), dynamic_threshold(), 1);
  const dr::BlockLayout layout_b = engine->layout(1);
  expect_same_layout(layout_b, expected_layout(*engine, b, dynamic_threshold()), "slot 1");
  EXPECT_FALSE(same_layout(layout_a, layout_b)) << "the two slots' layouts should differ for this test to mean much";
  {
    Output o = poisoned(a.q.shape());
    EXPECT_DR_FIELD(engine->attend(args_for(a, o), 0), "slot");
    EXPECT_DR_FIELD(engine->layout(0), "slot");
    // The failed call wrote nothing.
    for (std::int64_t i = 0; i < o.out.shape().elements(); ++i) ASSERT_TRUE(std::isnan(o.out.get(i)));
  }
  // The kept count of slot 0 is still reported (select() records it per slot).
  const dr::KeptBlocks kept_a_again = engine->kept(0);
  EXPECT_EQ(kept_a_again.kept, kept_a.kept);
  EXPECT_EQ(kept_a_again.total, kept_a.total);
  EXPECT_EQ(engine->kept(1).kept, layout_b.row_offsets.back());
  expect_matches(run_engine(*engine, b, 1), run_reference(b, 0.0, &layout_b), true, "slot 1");
  // Slot 2 was never selected.
  EXPECT_DR_FIELD(engine->kept(2), "slot");
  EXPECT_DR_FIELD(engine->layout(2), "slot");

  // Selecting slot 0 again makes it current again.
  engine->select(a.q.view(), a.k.view(), static_ratio(), 0);
  expect_same_layout(engine->layout(0), layout_a, "slot 0 reselected");
  EXPECT_DR_FIELD(engine->layout(1), "slot");
}

// keep_layouts on: every slot keeps its own layout, reusable with later Q/K/V (a refresh interval).
TEST(Engine, KeepLayoutsKeepsEverySlot) {
  dr_test::Rng rng(107);
  const dr::VideoGeometry g = with_text(video(7, 5, 9, 32, 2, 16), 8, dr::TextPlacement::suffix);
  const auto engine = make_engine(engine_options(g, prior_params(), 4, true));
  const Qkv a = structured_qkv(rng, call_shape(g, 1), dr::DType::f32);
  const Qkv b = structured_qkv(rng, call_shape(g, 2), dr::DType::bf16);
  const Qkv c = structured_qkv(rng, call_shape(g, 1), dr::DType::f32);

  engine->select(a.q.view(), a.k.view(), static_ratio(), 0);
  engine->select(b.q.view(), b.k.view(), dynamic_threshold(), 3);
  const dr::BlockLayout layout_a = engine->layout(0);
  const dr::BlockLayout layout_b = engine->layout(3);
  expect_same_layout(layout_a, expected_layout(*engine, a, static_ratio()), "slot 0");
  expect_same_layout(layout_b, expected_layout(*engine, b, dynamic_threshold()), "slot 3");
  EXPECT_EQ(layout_a.batch, 1);
  EXPECT_EQ(layout_b.batch, 2);
  EXPECT_EQ(engine->kept(0).kept, layout_a.row_offsets.back());
  EXPECT_EQ(engine->kept(0).total, 1 * g.heads * layout_a.blocks * layout_a.blocks);
  EXPECT_EQ(engine->kept(3).kept, layout_b.row_offsets.back());
  EXPECT_EQ(engine->kept(3).total, 2 * g.heads * layout_b.blocks * layout_b.blocks);

  // Both slots stay usable, in either order, each with its own layout.
  expect_matches(run_engine(*engine, b, 3), run_reference(b, 0.0, &layout_b), true, "slot 3");
  expect_matches(run_engine(*engine, a, 0), run_reference(a, 0.0, &layout_a), true, "slot 0");
  // A kept layout serves later inputs: attend(c) on slot 0 uses a's layout.
  const Output reused = run_engine(*engine, c, 0);
  expect_matches(reused, run_reference(c, 0.0, &layout_a), true, "slot 0 reused with new inputs");

  // Never-selected slots still throw.
  EXPECT_DR_FIELD(engine->kept(1), "slot");
  EXPECT_DR_FIELD(engine->layout(2), "slot");
  {
    Output o = poisoned(a.q.shape());
    EXPECT_DR_FIELD(engine->attend(args_for(a, o), 1), "slot");
  }

  // Reselecting one slot leaves the other alone.
  engine->select(c.q.view(), c.k.view(), static_ratio(0.25, 0.25), 0);
  const dr::BlockLayout layout_c = engine->layout(0);
  expect_same_layout(layout_c, expected_layout(*engine, c, static_ratio(0.25, 0.25)), "slot 0 reselected");
  expect_same_layout(engine->layout(3), layout_b, "slot 3 after reselecting slot 0");
  expect_matches(run_engine(*engine, b, 3), run_reference(b, 0.0, &layout_b), true, "slot 3 again");
}

// Slots outside [0, options.slots) are rejected by every call.
TEST(Engine, SlotOutOfRange) {
  dr_test::Rng rng(108);
  const dr::VideoGeometry g = video(3, 4, 6, 32, 1, 8);
  for (bool keep : {false, true}) {
    SCOPED_TRACE(keep ? "keep_layouts" : "shared");
    const auto engine = make_engine(engine_options(g, prior_params(), 2, keep));
    const Qkv x = structured_qkv(rng, call_shape(g, 1), dr::DType::f32);
    engine->select(x.q.view(), x.k.view(), static_ratio(), 1);
    for (int slot : {-1, 2, 1000}) {
      SCOPED_TRACE(slot);
      EXPECT_DR_FIELD(engine->select(x.q.view(), x.k.view(), static_ratio(), slot), "slot");
      Output o = poisoned(x.q.shape());
      EXPECT_DR_FIELD(engine->attend(args_for(x, o), slot), "slot");
      EXPECT_DR_FIELD(engine->kept(slot), "slot");
      EXPECT_DR_FIELD(engine->layout(slot), "slot");
    }
    // The failed calls did not disturb slot 1.
    const dr::BlockLayout layout = engine->layout(1);
    expect_matches(run_engine(*engine, x, 1), run_reference(x, 0.0, &layout), true, "slot 1");
  }
}

// The batch may change between calls; attend must use the batch its slot was selected for.
TEST(Engine, BatchChangesBetweenCalls) {
  dr_test::Rng rng(109);
  const dr::VideoGeometry g = with_text(video(4, 5, 7, 32, 2, 8), 3, dr::TextPlacement::suffix);
  for (bool keep : {false, true}) {
    SCOPED_TRACE(keep ? "keep_layouts" : "shared");
    const auto engine = make_engine(engine_options(g, prior_params(), 2, keep));
    const Qkv one = structured_qkv(rng, call_shape(g, 1), dr::DType::f32);
    const Qkv two = structured_qkv(rng, call_shape(g, 2), dr::DType::f32);
    engine->select(two.q.view(), two.k.view(), static_ratio(), 0);
    EXPECT_EQ(engine->layout(0).batch, 2);
    {
      Output o = poisoned(one.q.shape());
      EXPECT_DR_FIELD(engine->attend(args_for(one, o), 0), "q");
    }
    const dr::BlockLayout layout_two = engine->layout(0);
    expect_matches(run_engine(*engine, two, 0), run_reference(two, 0.0, &layout_two), true, "batch 2");
    engine->select(one.q.view(), one.k.view(), static_ratio(), 0);
    EXPECT_EQ(engine->kept(0).total, g.heads * engine->layout(0).blocks * engine->layout(0).blocks);
    {
      Output o = poisoned(two.q.shape());
      EXPECT_DR_FIELD(engine->attend(args_for(two, o), 0), "q");
    }
    const dr::BlockLayout layout_one = engine->layout(0);
    expect_same_layout(layout_one, expected_layout(*engine, one, static_ratio()), "batch 1");
    expect_matches(run_engine(*engine, one, 0), run_reference(one, 0.0, &layout_one), true, "batch 1");
  }
}

// Bad call tensors and selection parameters: Error naming the field; the slot keeps its layout.
TEST(Engine, CallErrorsNameTheField) {
  dr_test::Rng rng(110);
  const dr::VideoGeometry g = with_text(video(3, 5, 7, 32, 2, 16), 4, dr::TextPlacement::suffix);
  const auto engine = make_engine(engine_options(g));
  const dr::Shape s = call_shape(g, 1);
  const Qkv x = structured_qkv(rng, s, dr::DType::f32);
  engine->select(x.q.view(), x.k.view(), static_ratio(), 0);
  const dr::BlockLayout layout = engine->layout(0);

  auto tensor = [&](dr::Shape shape, dr::DType dtype = dr::DType::f32) {
    return dr_test::random_tensor(rng, shape, 1.0, dtype);
  };
  dr::Shape fewer = s, more_heads = s, other_dim = s, more_batch = s;
  fewer.tokens -= 1;
  more_heads.heads += 1;
  other_dim.head_dim = 8;
  more_batch.batch = 2;
  const dr::HostTensor q_fewer = tensor(fewer), q_heads = tensor(more_heads), q_dim = tensor(other_dim);
  const dr::HostTensor k_batch2 = tensor(more_batch), k_bf16 = tensor(s, dr::DType::bf16);
  const dr::SelectionParams ok = static_ratio();

  // select(): tensors.
  EXPECT_DR_FIELD(engine->select(q_fewer.view(), q_fewer.view(), ok, 0), "q");
  EXPECT_DR_FIELD(engine->select(q_heads.view(), q_heads.view(), ok, 0), "q");
  EXPECT_DR_FIELD(engine->select(q_dim.view(), q_dim.view(), ok, 0), "q");
  EXPECT_DR_FIELD(engine->select(x.q.view(), q_fewer.view(), ok, 0), "k");
  EXPECT_DR_FIELD(engine->select(x.q.view(), k_batch2.view(), ok, 0), "k");
  EXPECT_DR_FIELD(engine->select(x.q.view(), k_bf16.view(), ok, 0), "k");
  {
    dr::ConstTensor null_q = x.q.view();
    null_q.data = nullptr;
    EXPECT_DR_FIELD(engine->select(null_q, x.k.view(), ok, 0), "q");
    dr::ConstTensor zero_batch = x.q.view();
    zero_batch.shape.batch = 0;
    EXPECT_DR_FIELD(engine->select(zero_batch, zero_batch, ok, 0), "q");
  }
  // Non-finite Q or K.
  {
    dr::HostTensor q_nan = dr_test::convert(x.q, dr::DType::f32);
    q_nan.set(q_nan.index(0, 17, 1, 3), kNaN);
    EXPECT_DR_FIELD(engine->select(q_nan.view(), x.k.view(), ok, 0), "q");
    dr::HostTensor k_inf = dr_test::convert(x.k, dr::DType::f32);
    k_inf.set(k_inf.index(0, s.tokens - 1, 0, 0), std::numeric_limits<float>::infinity());
    EXPECT_DR_FIELD(engine->select(x.q.view(), k_inf.view(), ok, 0), "k");
  }
  // select(): parameters, named as validate(SelectionParams) names them.
  auto bad = [](auto change) {
    dr::SelectionParams p = static_ratio();
    change(p);
    return p;
  };
  const std::vector<std::pair<dr::SelectionParams, std::string>> bad_params = {
      {bad([](dr::SelectionParams& p) { p.r_near = 1.5; }), "selection.r_near"},
      {bad([](dr::SelectionParams& p) { p.r_near = -0.1; }), "selection.r_near"},
      {bad([](dr::SelectionParams& p) { p.r_far = 2.0; }), "selection.r_far"},
      {bad([](dr::SelectionParams& p) { p.r_far = std::nan(""); }), "selection.r_far"},
      {bad([](dr::SelectionParams& p) { p.tau_near = -1e-3; }), "selection.tau_near"},
      {bad([](dr::SelectionParams& p) { p.tau_far = 1.01; }), "selection.tau_far"},
  };
  for (const auto& [p, field] : bad_params) {
    std::string expected_field;
    try {
      dr::validate(p);
      ADD_FAILURE() << "validate() accepted bad parameters for " << field;
    } catch (const dr::Error& e) {
      expected_field = e.field();
    }
    EXPECT_EQ(expected_field, field);
    EXPECT_DR_FIELD(engine->select(x.q.view(), x.k.view(), p, 0), expected_field);
  }

  // attend(): tensors.
  Output o = poisoned(s);
  const dr::AttentionArgs good = args_for(x, o);
  {
    dr::AttentionArgs a = good;
    a.q = q_fewer.view();
    EXPECT_DR_FIELD(engine->attend(a, 0), "q");
    a = good;
    a.q = q_heads.view();
    EXPECT_DR_FIELD(engine->attend(a, 0), "q");
    a = good;
    a.k = q_fewer.view();
    EXPECT_DR_FIELD(engine->attend(a, 0), "k");
    a = good;
    a.k = k_batch2.view();
    EXPECT_DR_FIELD(engine->attend(a, 0), "k");
    a = good;
    a.k = k_bf16.view();
    EXPECT_DR_FIELD(engine->attend(a, 0), "k");
    a = good;
    a.v = q_dim.view();
    EXPECT_DR_FIELD(engine->attend(a, 0), "v");
    a = good;
    a.out.shape.heads += 1;
    EXPECT_DR_FIELD(engine->attend(a, 0), "out");
  }
  // None of the failed calls wrote anything or disturbed the slot.
  for (std::int64_t i = 0; i < o.out.shape().elements(); ++i) ASSERT_TRUE(std::isnan(o.out.get(i)));
  expect_same_layout(engine->layout(0), layout, "after failed calls");
  expect_matches(run_engine(*engine, x, 0), run_reference(x, 0.0, &layout), true, "after failed calls");
}

// Bad options: Error naming the field, from the constructor.
TEST(Engine, OptionErrorsNameTheField) {
  const dr::VideoGeometry g = with_text(video(3, 5, 7, 32, 2, 16), 4, dr::TextPlacement::suffix);
  auto with = [&](auto change) {
    dr::EngineOptions o = engine_options(g);
    change(o);
    return o;
  };
  EXPECT_NO_THROW(make_engine(engine_options(g)));
  EXPECT_DR_FIELD(make_engine(with([](dr::EngineOptions& o) { o.slots = 0; })), "options.slots");
  EXPECT_DR_FIELD(make_engine(with([](dr::EngineOptions& o) { o.slots = -3; })), "options.slots");
  EXPECT_DR_FIELD(make_engine(with([](dr::EngineOptions& o) { o.slots = 65537; })), "options.slots");
  EXPECT_NO_THROW(make_engine(with([](dr::EngineOptions& o) { o.slots = 65536; })));
  EXPECT_DR_FIELD(make_engine(with([](dr::EngineOptions& o) { o.threads = -1; })), "options.threads");
  EXPECT_DR_FIELD(make_engine(with([](dr::EngineOptions& o) { o.scale = -0.5; })), "options.scale");
  EXPECT_DR_FIELD(make_engine(with([](dr::EngineOptions& o) { o.scale = std::nan(""); })), "options.scale");
  EXPECT_DR_FIELD(make_engine(with([](dr::EngineOptions& o) { o.scale = std::numeric_limits<double>::infinity(); })),
                  "options.scale");

  // Geometry and prior errors carry the fields validate() gives them.
  const std::vector<dr::VideoGeometry> bad_geometries = [&] {
    std::vector<dr::VideoGeometry> v(6, g);
    v[0].block_size = 48;
    v[1].frames = 0;
    v[2].text_placement = dr::TextPlacement::none;  // 4 text tokens without a placement
    v[3].heads = 0;
    v[4].tile = dr::Tile{2, 4, 4};  // a tile with raster order
    v[5].head_dim = 0;
    return v;
  }();
  for (const dr::VideoGeometry& bad : bad_geometries) {
    SCOPED_TRACE(describe(bad));
    std::string field;
    try {
      dr::validate(bad);
      ADD_FAILURE() << "validate() accepted a bad geometry";
    } catch (const dr::Error& e) {
      field = e.field();
    }
    EXPECT_EQ(field.rfind("geometry", 0), 0u) << field;
    EXPECT_DR_FIELD(make_engine(with([&](dr::EngineOptions& o) { o.geometry = bad; })), field);
  }
  EXPECT_DR_FIELD(make_engine(with([](dr::EngineOptions& o) { o.prior.gamma = 0.0; })), "prior.gamma");
  EXPECT_DR_FIELD(make_engine(with([](dr::EngineOptions& o) { o.prior.lambda = 100.0; })), "prior.lambda");
  EXPECT_DR_FIELD(make_engine(with([](dr::EngineOptions& o) { o.prior.theta_m = 1.0; })), "prior.theta_m");
  EXPECT_DR_FIELD(make_engine(with([](dr::EngineOptions& o) { o.prior.theta_c = -0.1; })), "prior.theta_c");
}

// The geometry's batch is ignored (the batch comes with each call).
TEST(Engine, GeometryBatchIsIgnored) {
  dr_test::Rng rng(111);
  dr::VideoGeometry g = video(3, 4, 9, 32, 2, 8);
  g.batch = 3;
  const auto engine = make_engine(engine_options(g));
  EXPECT_EQ(engine->options().geometry.batch, 1);
  EXPECT_EQ(engine->prior().geometry.batch, 1);
  EXPECT_EQ(engine->options().geometry.frames, 3);
  EXPECT_EQ(engine->options().slots, 1);
  const Qkv x = structured_qkv(rng, call_shape(g, 2), dr::DType::f32);
  engine->select(x.q.view(), x.k.view(), static_ratio(), 0);
  EXPECT_EQ(engine->layout(0).batch, 2);
  // The prior is the one build_radial_prior() gives for the geometry.
  dr::VideoGeometry g1 = g;
  g1.batch = 1;
  const dr::RadialPrior prior = dr::build_radial_prior(g1, prior_params());
  EXPECT_EQ(engine->prior().row_offsets, prior.row_offsets);
  EXPECT_EQ(engine->prior().col_indices, prior.col_indices);
}

// A CUDA engine cannot be made without a GPU (or without the CUDA backend): Error, never a crash.
TEST(Engine, CudaDeviceWithoutGpuThrows) {
  if (dr::built_with_cuda() && dr::cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present";
  dr::EngineOptions o = engine_options(video(3, 4, 8, 128, 2, 64));
  o.device = dr::Device::cuda;
  try {
    make_engine(o);
    ADD_FAILURE() << "a CUDA engine was made without a GPU";
  } catch (const dr::Error& e) {
    if (!dr::built_with_cuda()) {
      EXPECT_EQ(e.field(), "device") << e.what();
    }
    EXPECT_TRUE(e.field() == "device" || e.field() == "cuda" || e.field() == "options.cuda_device") << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected dynamicrad::Error, got: " << e.what();
  }
}

// select() with a PooledPrefix (block means computed before selection, e.g. by apply_rotary's
// pooled output): with pooling's own means the layout is select()'s without a prefix.
namespace {

// pool_blocks() of a call's q and k with the engine's geometry.
dr::PooledBlocks pooled_of(const dr::SparseAttentionEngine& engine, const Qkv& x,
                           const dr::PooledPrefix& prefix = {}) {
  dr::VideoGeometry g = engine.prior().geometry;
  g.batch = x.q.shape().batch;
  return dr::pool_blocks(x.q.view(), x.k.view(), g, prefix);
}

}  // namespace

TEST(Engine, SelectWithPoolingsOwnPrefixGivesTheSameLayout) {
  dr_test::Rng rng(121);
  const std::vector<dr::VideoGeometry> geometries = {
      // 443 tokens, 14 blocks of 32, the last short.
      with_text(video(8, 6, 9, 32, 2, 16), 11, dr::TextPlacement::suffix),
      // tiled3d, 650 tokens, 11 blocks of 64, the last of 10 tokens.
      tiled(video(5, 10, 13, 64, 3, 8)),
      // a text prefix: 331 tokens, 11 blocks of 32.
      with_text(video(6, 6, 9, 32, 1, 8), 7, dr::TextPlacement::prefix),
  };
  const std::vector<dr::DType> dtypes = {dr::DType::f32, dr::DType::bf16, dr::DType::f16};
  int runs = 0;
  for (std::size_t gi = 0; gi < geometries.size(); ++gi) {
    const dr::VideoGeometry& g = geometries[gi];
    const bool keep = gi == 1;
    const auto engine = make_engine(engine_options(g, prior_params(), 2, keep));
    const std::int64_t blocks = dr::num_blocks(g);
    ASSERT_NE(dr::total_tokens(g) % g.block_size, 0) << "the last block should be short";
    for (const dr::SelectionParams& sel : {static_ratio(), dynamic_threshold()}) {
      for (std::int64_t batch : {1, 2}) {
        const dr::DType dtype = dtypes[static_cast<std::size_t>(runs++) % dtypes.size()];
        const Qkv x = structured_qkv(rng, call_shape(g, batch), dtype);
        engine->select(x.q.view(), x.k.view(), sel, 0);
        const dr::BlockLayout want = engine->layout(0);
        const dr::KeptBlocks want_kept = engine->kept(0);
        const dr::PooledBlocks pooled = pooled_of(*engine, x);
        for (const std::int64_t P : {std::int64_t{0}, blocks / 2, blocks - 1, blocks}) {
          const std::string what = describe(g) + " " + mode_name(sel) + " " + dr::to_string(dtype) + " batch " +
                                   std::to_string(batch) + " prefix blocks " + std::to_string(P);
          SCOPED_TRACE(what);
          const dr_test::PrefixArrays prefix = dr_test::prefix_of(pooled, P, g.block_size);
          const int slot = keep ? 1 : 0;
          engine->select(x.q.view(), x.k.view(), sel, slot, nullptr, prefix.view());
          expect_same_layout(engine->layout(slot), want, what);
          EXPECT_EQ(engine->kept(slot).kept, want_kept.kept);
          EXPECT_EQ(engine->kept(slot).total, want_kept.total);
        }
        // A default (empty) prefix is select() without one.
        engine->select(x.q.view(), x.k.view(), sel, 0, nullptr, dr::PooledPrefix{});
        expect_same_layout(engine->layout(0), want, "empty prefix");
        if (HasFailure()) return;
      }
    }
  }
}

// The prefix's means are the ones selection uses: a prefix of every block from other inputs selects
// those inputs' layout; a partial one selects what pool_blocks() with that prefix gives.
TEST(Engine, SelectUsesThePrefixMeans) {
  dr_test::Rng rng(122);
  const dr::VideoGeometry g = with_text(video(8, 6, 9, 32, 2, 16), 11, dr::TextPlacement::suffix);
  const auto engine = make_engine(engine_options(g));
  const std::int64_t blocks = dr::num_blocks(g);
  for (const dr::SelectionParams& sel : {static_ratio(), dynamic_threshold()}) {
    SCOPED_TRACE(mode_name(sel));
    const Qkv x = structured_qkv(rng, call_shape(g, 2), dr::DType::f32);
    const Qkv y = structured_qkv(rng, call_shape(g, 2), dr::DType::f32);
    engine->select(x.q.view(), x.k.view(), sel, 0);
    const dr::BlockLayout layout_x = engine->layout(0);
    engine->select(y.q.view(), y.k.view(), sel, 0);
    const dr::BlockLayout layout_y = engine->layout(0);
    ASSERT_FALSE(same_layout(layout_x, layout_y)) << "x and y should select different layouts for this test to mean much";
    const dr::PooledBlocks pooled_y = pooled_of(*engine, y);

    const dr_test::PrefixArrays all = dr_test::prefix_of(pooled_y, blocks, g.block_size);
    engine->select(x.q.view(), x.k.view(), sel, 0, nullptr, all.view());
    expect_same_layout(engine->layout(0), layout_y, "x with y's means of every block");

    const dr_test::PrefixArrays part = dr_test::prefix_of(pooled_y, blocks / 2, g.block_size);
    engine->select(x.q.view(), x.k.view(), sel, 0, nullptr, part.view());
    const dr::BlockLayout mixed = engine->layout(0);
    expect_same_layout(mixed, dr::select_blocks(engine->prior(), pooled_of(*engine, x, part.view()), sel),
                       "x with y's means of the first half");
    EXPECT_FALSE(same_layout(mixed, layout_x)) << "y's means of the first blocks left the layout as x's";
  }
}

// A bad prefix: Error naming the field; the CPU engine leaves the slot as it was.
TEST(Engine, PooledPrefixErrorsNameTheField) {
  dr_test::Rng rng(123);
  const dr::VideoGeometry g = with_text(video(3, 5, 7, 32, 2, 16), 4, dr::TextPlacement::suffix);  // 109 tokens, 4 blocks
  const auto engine = make_engine(engine_options(g));
  const std::int64_t blocks = dr::num_blocks(g);
  ASSERT_EQ(blocks, 4);
  const Qkv x = structured_qkv(rng, call_shape(g, 2), dr::DType::f32);
  const dr::SelectionParams sel = static_ratio();
  engine->select(x.q.view(), x.k.view(), sel, 0);
  const dr::BlockLayout layout = engine->layout(0);
  const dr::KeptBlocks kept = engine->kept(0);
  const dr::PooledBlocks pooled = pooled_of(*engine, x);
  const dr_test::PrefixArrays all = dr_test::prefix_of(pooled, blocks, g.block_size);
  for (const std::int64_t bad : {std::int64_t{-1}, blocks + 1, std::int64_t{1000}}) {
    SCOPED_TRACE(bad);
    EXPECT_DR_FIELD(engine->select(x.q.view(), x.k.view(), sel, 0, nullptr,
                                   dr::PooledPrefix{all.q.data(), all.k.data(), bad, g.block_size}),
                    "pooled_blocks");
  }
  const dr_test::PrefixArrays two = dr_test::prefix_of(pooled, 2, g.block_size);
  EXPECT_DR_FIELD(engine->select(x.q.view(), x.k.view(), sel, 0, nullptr, dr::PooledPrefix{nullptr, two.k.data(), 2, g.block_size}),
                  "pooled_q");
  EXPECT_DR_FIELD(engine->select(x.q.view(), x.k.view(), sel, 0, nullptr, dr::PooledPrefix{two.q.data(), nullptr, 2, g.block_size}),
                  "pooled_k");
  EXPECT_DR_FIELD(engine->select(x.q.view(), x.k.view(), sel, 0, nullptr,
                                 dr::PooledPrefix{two.q.data(), two.k.data(), 2, g.block_size * 2}),
                  "pool_block");
  dr_test::PrefixArrays broken = two;
  broken.k[broken.k.size() / 2] = kNaN;
  EXPECT_DR_FIELD(engine->select(x.q.view(), x.k.view(), sel, 0, nullptr, broken.view()), "pooled_k");
  broken = two;
  broken.q[0] = std::numeric_limits<float>::infinity();
  EXPECT_DR_FIELD(engine->select(x.q.view(), x.k.view(), sel, 0, nullptr, broken.view()), "pooled_q");
  expect_same_layout(engine->layout(0), layout, "after failed calls");
  EXPECT_EQ(engine->kept(0).kept, kept.kept);
}

// ---- attend_dense(): dense attention (every block pair) on the engine's own kernels ----------------
namespace {

// attend_dense() into a NaN-poisoned output of `out_dtype`.
Output run_dense(const dr::SparseAttentionEngine& engine, const Qkv& x, bool lse = true,
                 dr::DType out_dtype = dr::DType::f32) {
  Output o = poisoned(x.q.shape(), out_dtype);
  engine.attend_dense(args_for(x, o, lse));
  return o;
}

bool same_bits(const Output& a, const Output& b) {
  const std::size_t bytes = static_cast<std::size_t>(a.out.shape().elements()) * dr::dtype_size(a.out.dtype());
  return a.out.dtype() == b.out.dtype() && a.out.shape() == b.out.shape() &&
         std::memcmp(a.out.view().data, b.out.view().data, bytes) == 0 && a.lse.size() == b.lse.size() &&
         std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float)) == 0;
}

// The prior of these small videos keeps fewer than all block pairs (so that attend_dense() is not
// trivially the prior's layout).
void expect_sparse_prior(const dr::SparseAttentionEngine& engine, std::int64_t batch) {
  const dr::VideoGeometry& g = engine.prior().geometry;
  const dr::BlockLayout prior = dr::layout_from_prior(engine.prior(), batch, g.heads);
  EXPECT_LT(prior.kept(), batch * g.heads * prior.blocks * prior.blocks) << "the prior keeps every block pair";
}

}  // namespace

// attend_dense() is dense attention for any batch, f32 / bf16 / f16 inputs, with and without lse, on
// geometries with a text suffix or prefix, a short last block, both token orders and block 32 / 64 /
// 128; no select() is needed, and the engine's (sparse) prior plays no part.
TEST(Engine, AttendDenseMatchesDenseReference) {
  dr_test::Rng rng(131);
  const std::vector<dr::VideoGeometry> geometries = {
      // 8 x 6 x 9 video + 11 text suffix = 443 tokens (14 blocks of 32, the last of 27 tokens).
      with_text(video(8, 6, 9, 32, 2, 16), 11, dr::TextPlacement::suffix),
      // tiled3d with a text suffix, block 64: 4 x 6 x 10 + 5 = 245 tokens, the last block of 53.
      tiled(with_text(video(4, 6, 10, 64, 2, 32), 5, dr::TextPlacement::suffix)),
      // block 128, 5 x 12 x 16 video + 19 text suffix = 979 tokens.
      with_text(video(5, 12, 16, 128, 1, 16), 19, dr::TextPlacement::suffix),
      // a text prefix: 7 + 6 x 6 x 9 = 331 tokens.
      with_text(video(6, 6, 9, 32, 1, 8), 7, dr::TextPlacement::prefix),
  };
  const std::vector<dr::DType> dtypes = {dr::DType::f32, dr::DType::bf16, dr::DType::f16};
  int runs = 0;
  for (const dr::VideoGeometry& g : geometries) {
    ASSERT_NE(dr::total_tokens(g) % g.block_size, 0) << describe(g) << ": the last block should be short";
    const auto engine = make_engine(engine_options(g));
    for (std::int64_t batch : {1, 2, 1}) {  // back to batch 1: the batch-1 plan is kept and reused
      const dr::DType dtype = dtypes[static_cast<std::size_t>(runs) % dtypes.size()];
      const bool lse = runs % 4 != 3;
      ++runs;
      const std::string what = describe(g) + " " + dr::to_string(dtype) + " batch " + std::to_string(batch) +
                               (lse ? " with lse" : " without lse");
      SCOPED_TRACE(what);
      if (batch == 1) expect_sparse_prior(*engine, batch);
      const Qkv x = structured_qkv(rng, call_shape(g, batch), dtype);
      const Output got = run_dense(*engine, x, lse);
      const Output want = run_reference(x, 0.0, nullptr);
      expect_matches(got, want, lse, what);
      // The comparison can fail: the prior's block mask gives another result.
      const dr::BlockLayout prior = dr::layout_from_prior(engine->prior(), batch, g.heads);
      EXPECT_GT(compare(got, run_reference(x, 0.0, &prior), false).max_abs, 1e-3)
          << "dense and prior-masked attention should differ on these inputs";
    }
  }
  // The slots were never selected: attend_dense() does not need or make a layout.
  const auto engine = make_engine(engine_options(geometries[0]));
  const Qkv x = structured_qkv(rng, call_shape(geometries[0], 2), dr::DType::f32);
  run_dense(*engine, x);
  EXPECT_DR_FIELD(engine->kept(0), "slot");
  EXPECT_DR_FIELD(engine->layout(0), "slot");
}

// The independent naive oracle (test_support.h) agrees, lse included.
TEST(Engine, AttendDenseMatchesNaiveAttention) {
  dr_test::Rng rng(132);
  const dr::VideoGeometry g = with_text(video(3, 5, 7, 32, 2, 16), 4, dr::TextPlacement::suffix);  // 109 tokens
  const auto engine = make_engine(engine_options(g));
  const Qkv x = structured_qkv(rng, call_shape(g, 2), dr::DType::f32);
  const Output got = run_dense(*engine, x);
  const dr_test::NaiveResult want = dr_test::naive_attention(x.q, x.k, x.v, 1.0 / std::sqrt(16.0), nullptr);
  double max_abs = 0.0, lse_abs = 0.0;
  for (std::int64_t i = 0; i < got.out.shape().elements(); ++i)
    max_abs = std::max(max_abs, std::fabs(got.out.get(i) - want.out[static_cast<std::size_t>(i)]));
  for (std::size_t i = 0; i < got.lse.size(); ++i)
    lse_abs = std::max(lse_abs, std::fabs(static_cast<double>(got.lse[i]) - want.lse[i]));
  EXPECT_LE(max_abs, kMaxAbs);
  EXPECT_LE(lse_abs, kLseAbs);
  // A wrong scale would be caught.
  const dr_test::NaiveResult other = dr_test::naive_attention(x.q, x.k, x.v, 0.5, nullptr);
  double other_abs = 0.0;
  for (std::size_t i = 0; i < got.lse.size(); ++i)
    other_abs = std::max(other_abs, std::fabs(static_cast<double>(got.lse[i]) - other.lse[i]));
  EXPECT_GT(other_abs, 1e-2);
}

// Half-precision outputs: within half an ulp of the oracle, in the output's own format.
TEST(Engine, AttendDenseHalfPrecisionOutput) {
  dr_test::Rng rng(133);
  const dr::VideoGeometry g = tiled(with_text(video(4, 6, 10, 64, 2, 32), 5, dr::TextPlacement::suffix));
  const auto engine = make_engine(engine_options(g));
  for (dr::DType dtype : {dr::DType::bf16, dr::DType::f16}) {
    SCOPED_TRACE(dr::to_string(dtype));
    for (std::int64_t batch : {1, 2}) {
      const Qkv x = structured_qkv(rng, call_shape(g, batch), dtype);
      const Output got = run_dense(*engine, x, true, dtype);
      EXPECT_EQ(got.out.dtype(), dtype);
      const double ulp = dtype == dr::DType::bf16 ? 0x1.0p-8 : 0x1.0p-11;
      expect_matches(got, run_reference(x, 0.0, nullptr), true, "half output", ulp, 4.0 * ulp);
    }
  }
}

// attend_dense() is bit for bit attend() over a layout that keeps every block pair (a dense prior
// with keep ratios 1), the CPU plan of full_layout(), and attend_dense() of an engine with another
// prior; the thread count does not change the bits; options.scale is honoured.
TEST(Engine, AttendDenseIsBitwiseTheFullLayoutAttend) {
  dr_test::Rng rng(134);
  dr::RadialPriorParams dense_prior;
  dense_prior.gamma = 16.0;
  dense_prior.theta_m = 0.0;
  dense_prior.theta_c = 0.0;
  const std::vector<dr::VideoGeometry> geometries = {
      with_text(video(3, 7, 9, 32, 2, 16), 13, dr::TextPlacement::suffix),
      tiled(video(2, 9, 11, 64, 1, 32)),
  };
  for (const dr::VideoGeometry& g : geometries) {
    SCOPED_TRACE(describe(g));
    const auto full = make_engine(engine_options(g, dense_prior));
    const auto sparse = make_engine(engine_options(g));  // prior_params(): a sparse prior
    dr::EngineOptions one_thread = engine_options(g);
    one_thread.threads = 1;
    const auto single = make_engine(one_thread);
    for (std::int64_t batch : {1, 2}) {
      SCOPED_TRACE("batch " + std::to_string(batch));
      for (dr::DType dtype : {dr::DType::f32, dr::DType::bf16}) {
        SCOPED_TRACE(dr::to_string(dtype));
        const Qkv x = structured_qkv(rng, call_shape(g, batch), dtype);
        full->select(x.q.view(), x.k.view(), static_ratio(1.0, 1.0), 0);
        ASSERT_EQ(full->kept(0).kept, full->kept(0).total);
        const Output via_layout = run_engine(*full, x, 0, true, dtype);
        const Output dense_full = run_dense(*full, x, true, dtype);
        const Output dense_sparse = run_dense(*sparse, x, true, dtype);
        const Output dense_single = run_dense(*single, x, true, dtype);
        EXPECT_TRUE(same_bits(dense_full, via_layout)) << "attend_dense vs attend over the full layout";
        EXPECT_TRUE(same_bits(dense_sparse, via_layout)) << "attend_dense of a sparse-prior engine";
        EXPECT_TRUE(same_bits(dense_single, via_layout)) << "threads 1 vs 2";

        Output plan_out = poisoned(x.q.shape(), dtype);
        dr::AttentionOptions opts;
        opts.threads = 2;
        dr::plan_cpu_attention(dr::full_layout(batch, g.heads, dr::total_tokens(g), g.block_size), opts)
            ->run(args_for(x, plan_out));
        EXPECT_TRUE(same_bits(dense_sparse, plan_out)) << "attend_dense vs plan_cpu_attention(full_layout)";

        // same_bits() can fail: the sparse engine's own layout gives other bits.
        sparse->select(x.q.view(), x.k.view(), static_ratio(), 0);
        EXPECT_FALSE(same_bits(run_engine(*sparse, x, 0, true, dtype), dense_sparse));
        // attend_dense() left the selected layout usable.
        const dr::BlockLayout layout = sparse->layout(0);
        expect_matches(run_engine(*sparse, x, 0), run_reference(x, 0.0, &layout), true, "attend after attend_dense");
      }
    }
  }

  // options.scale replaces 1 / sqrt(head_dim) in attend_dense() too.
  const dr::VideoGeometry g = geometries[0];
  dr::EngineOptions o = engine_options(g);
  o.scale = 0.37;
  const auto scaled = make_engine(o);
  const Qkv x = structured_qkv(rng, call_shape(g, 2), dr::DType::f32);
  const Output got = run_dense(*scaled, x);
  expect_matches(got, run_reference(x, 0.37, nullptr), true, "scale 0.37");
  EXPECT_GT(compare(got, run_reference(x, 0.0, nullptr), false).max_abs, 1e-3);
}

// Bad tensors: Error naming the field, and nothing written.
TEST(Engine, AttendDenseErrorsNameTheField) {
  dr_test::Rng rng(135);
  const dr::VideoGeometry g = with_text(video(3, 5, 7, 32, 2, 16), 4, dr::TextPlacement::suffix);  // 109 tokens
  const auto engine = make_engine(engine_options(g));
  const dr::Shape s = call_shape(g, 1);
  const Qkv x = structured_qkv(rng, s, dr::DType::f32);
  auto tensor = [&](dr::Shape shape, dr::DType dtype = dr::DType::f32) {
    return dr_test::random_tensor(rng, shape, 1.0, dtype);
  };
  dr::Shape fewer = s, more = s, more_heads = s, other_dim = s, batch2 = s;
  fewer.tokens -= 1;
  more.tokens += 1;
  more_heads.heads += 1;
  other_dim.head_dim = 8;
  batch2.batch = 2;
  const dr::HostTensor t_fewer = tensor(fewer), t_more = tensor(more), t_heads = tensor(more_heads);
  const dr::HostTensor t_dim = tensor(other_dim), t_batch2 = tensor(batch2), t_bf16 = tensor(s, dr::DType::bf16);

  Output o = poisoned(s);
  const dr::AttentionArgs good = args_for(x, o);
  auto expect_field = [&](auto change, const char* field) {
    dr::AttentionArgs a = good;
    change(a);
    EXPECT_DR_FIELD(engine->attend_dense(a), field);
  };
  expect_field([&](dr::AttentionArgs& a) { a.q = t_fewer.view(); }, "q");
  expect_field([&](dr::AttentionArgs& a) { a.q = t_more.view(); }, "q");
  expect_field([&](dr::AttentionArgs& a) { a.q = t_heads.view(); }, "q");
  expect_field([&](dr::AttentionArgs& a) { a.q = t_dim.view(); }, "q");
  expect_field([&](dr::AttentionArgs& a) { a.q.data = nullptr; }, "q");
  expect_field([&](dr::AttentionArgs& a) { a.q.shape.batch = 0; }, "q");
  expect_field([&](dr::AttentionArgs& a) { a.k = t_fewer.view(); }, "k");
  expect_field([&](dr::AttentionArgs& a) { a.k = t_heads.view(); }, "k");
  expect_field([&](dr::AttentionArgs& a) { a.k = t_batch2.view(); }, "k");
  expect_field([&](dr::AttentionArgs& a) { a.k = t_bf16.view(); }, "k");
  expect_field([&](dr::AttentionArgs& a) { a.k.data = nullptr; }, "k");
  expect_field([&](dr::AttentionArgs& a) { a.v = t_dim.view(); }, "v");
  expect_field([&](dr::AttentionArgs& a) { a.v = t_more.view(); }, "v");
  expect_field([&](dr::AttentionArgs& a) { a.v = t_batch2.view(); }, "v");
  expect_field([&](dr::AttentionArgs& a) { a.v.data = nullptr; }, "v");
  expect_field([&](dr::AttentionArgs& a) { a.out.shape.heads += 1; }, "out");
  expect_field([&](dr::AttentionArgs& a) { a.out.shape.tokens -= 1; }, "out");
  expect_field([&](dr::AttentionArgs& a) { a.out.data = nullptr; }, "out");
  // the message names the field as a whole word too (what the C ABI and Python pass on)
  {
    dr::AttentionArgs a = good;
    a.q = t_fewer.view();
    EXPECT_DR_ERROR(engine->attend_dense(a), "q");
    a = good;
    a.out.data = nullptr;
    EXPECT_DR_ERROR(engine->attend_dense(a), "out");
  }
  // None of the failed calls wrote anything; a good call afterwards works.
  for (std::int64_t i = 0; i < o.out.shape().elements(); ++i) ASSERT_TRUE(std::isnan(o.out.get(i))) << i;
  for (float v : o.lse) ASSERT_TRUE(std::isnan(v));
  expect_matches(run_dense(*engine, x), run_reference(x, 0.0, nullptr), true, "after failed calls");
}
