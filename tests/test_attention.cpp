// Tests for attention.h: the dense reference against an independent naive attention, and the CPU
// block-sparse backend against the reference (full layout == dense, random layouts, odd sizes,
// half-precision inputs and outputs, lse, thread-count independence, argument errors).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "dynamicrad/attention.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"
#include "dynamicrad/synthetic.h"
#include "dynamicrad/tensor.h"
#include "test_support.h"

namespace dr = dynamicrad;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Qkv {
  dr::HostTensor q, k, v;
};

Qkv random_qkv(dr_test::Rng& rng, dr::Shape shape, dr::DType dtype = dr::DType::f32) {
  Qkv x{dr_test::random_tensor(rng, shape), dr_test::random_tensor(rng, shape),
        dr_test::random_tensor(rng, shape)};
  if (dtype != dr::DType::f32) {
    x.q = dr_test::convert(x.q, dtype);
    x.k = dr_test::convert(x.k, dtype);
    x.v = dr_test::convert(x.v, dtype);
  }
  return x;
}

// Output of one attention call; out and lse were poisoned with NaN before the call.
struct Result {
  dr::HostTensor out;
  std::vector<float> lse;
};

Result poisoned_result(const dr::Shape& shape, dr::DType out_dtype) {
  Result r{dr::HostTensor(out_dtype, shape),
           std::vector<float>(static_cast<std::size_t>(shape.batch * shape.heads * shape.tokens), kNaN)};
  dr_test::fill(r.out, kNaN);
  return r;
}

dr::AttentionArgs args_for(const Qkv& x, Result& r) {
  dr::AttentionArgs a;
  a.q = x.q.view();
  a.k = x.k.view();
  a.v = x.v.view();
  a.out = r.out.mutable_view();
  a.lse = r.lse.data();
  return a;
}

Result run_backend(const dr::AttentionBackend& backend, const Qkv& x, dr::DType out_dtype = dr::DType::f32) {
  Result r = poisoned_result(x.q.shape(), out_dtype);
  backend.run(args_for(x, r));
  return r;
}

Result run_reference(const Qkv& x, const dr::AttentionOptions& opts, const dr::BlockLayout* layout,
                     dr::DType out_dtype = dr::DType::f32) {
  Result r = poisoned_result(x.q.shape(), out_dtype);
  dr::attention_reference(args_for(x, r), opts, layout);
  return r;
}

double default_scale(const dr::Shape& s) { return 1.0 / std::sqrt(static_cast<double>(s.head_dim)); }

// Rows (b, h, token) whose layout row keeps no block.
std::vector<char> empty_rows(const dr::BlockLayout& l, const dr::Shape& s) {
  std::vector<char> e(static_cast<std::size_t>(s.batch * s.heads * s.tokens), 0);
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads; ++h)
      for (std::int64_t t = 0; t < s.tokens; ++t) {
        const std::int64_t row = l.row(b, h, t / l.block_size);
        e[(b * s.heads + h) * s.tokens + t] = l.row_offsets[row] == l.row_offsets[row + 1];
      }
  return e;
}

// Compares an attention result with expected values: |got - want| <= atol + rtol * |want|; rows with
// no kept block must be exactly 0 with lse -inf. Reports the first few differences.
void expect_close(const Result& got, const std::vector<double>& want_out, const std::vector<double>& want_lse,
                  double atol, double rtol, const std::vector<char>* empty, const char* what) {
  const dr::Shape s = got.out.shape();
  int bad = 0;
  double worst = 0.0;
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t t = 0; t < s.tokens; ++t)
      for (std::int64_t h = 0; h < s.heads; ++h) {
        const bool is_empty = empty && (*empty)[(b * s.heads + h) * s.tokens + t];
        for (std::int64_t d = 0; d < s.head_dim; ++d) {
          const std::int64_t i = got.out.index(b, t, h, d);
          const double g = got.out.get(i), w = want_out[i];
          const bool ok = is_empty ? g == 0.0 : std::fabs(g - w) <= atol + rtol * std::fabs(w);
          if (std::isfinite(g)) worst = std::max(worst, std::fabs(g - w));
          if (!ok && bad++ < 5)
            ADD_FAILURE() << what << ": out[b=" << b << ", t=" << t << ", h=" << h << ", d=" << d << "] = " << g
                          << ", expected " << (is_empty ? 0.0 : w);
        }
        const std::size_t li = static_cast<std::size_t>((b * s.heads + h) * s.tokens + t);
        const double gl = got.lse[li];
        const bool lse_ok = is_empty ? (std::isinf(gl) && gl < 0)
                                     : std::fabs(gl - want_lse[li]) <= 1e-5 + 1e-6 * std::fabs(want_lse[li]);
        if (!lse_ok && bad++ < 5)
          ADD_FAILURE() << what << ": lse[b=" << b << ", h=" << h << ", t=" << t << "] = " << gl << ", expected "
                        << (is_empty ? -std::numeric_limits<double>::infinity() : want_lse[li]);
      }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " mismatches, worst finite abs error " << worst;
}

std::vector<double> as_double(const dr::HostTensor& t) {
  std::vector<double> v(static_cast<std::size_t>(t.shape().elements()));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = t.get(static_cast<std::int64_t>(i));
  return v;
}

std::vector<double> as_double(const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); }

// A random layout: every row a random subset; some rows empty, some with a single block.
dr::BlockLayout random_layout(dr_test::Rng& rng, std::int64_t batch, std::int64_t heads, std::int64_t tokens,
                              int block_size) {
  const std::int64_t blocks = (tokens + block_size - 1) / block_size;
  std::vector<std::vector<std::int32_t>> rows(static_cast<std::size_t>(batch * heads * blocks));
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const double roll = rng.uniform();
    if (r == 0 || roll < 0.1) continue;  // empty
    if (r == 1 || roll < 0.3) {
      rows[r].push_back(static_cast<std::int32_t>(rng.integer(0, blocks - 1)));
      continue;
    }
    for (std::int64_t c = 0; c < blocks; ++c)
      if (rng.coin(0.5)) rows[r].push_back(static_cast<std::int32_t>(c));
  }
  return dr_test::make_layout(batch, heads, tokens, block_size, rows);
}

dr::AttentionOptions threads(int n, double scale = 0.0) {
  dr::AttentionOptions o;
  o.threads = n;
  o.scale = scale;
  return o;
}

}  // namespace

TEST(Attention, HalfConversions) {
  EXPECT_EQ(dr::float_to_half(1.0f), 0x3C00);
  EXPECT_EQ(dr::float_to_half(-2.0f), 0xC000);
  EXPECT_EQ(dr::half_to_float(0x3555), 0.333251953125f);
  EXPECT_EQ(dr::float_to_half(65504.0f), 0x7BFF);
  EXPECT_EQ(dr::float_to_half(1e6f), 0x7C00);  // overflow to +inf
  EXPECT_TRUE(std::isnan(dr::half_to_float(dr::float_to_half(kNaN))));
  // Round to nearest even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
  EXPECT_EQ(dr::float_to_half(1.0f + 0x1.0p-11f), 0x3C00);
  EXPECT_EQ(dr::float_to_half(1.0f + 3 * 0x1.0p-11f), 0x3C02);
  EXPECT_EQ(dr::float_to_bfloat16(1.0f), 0x3F80);
  EXPECT_EQ(dr::bfloat16_to_float(0x4049), 3.140625f);
  EXPECT_EQ(dr::float_to_bfloat16(1.0f + 0x1.0p-8f), 0x3F80);  // tie to even
  EXPECT_EQ(dr::float_to_bfloat16(1.0f + 3 * 0x1.0p-8f), 0x3F82);
  EXPECT_TRUE(std::isnan(dr::bfloat16_to_float(dr::float_to_bfloat16(kNaN))));
  EXPECT_EQ(dr::dtype_size(dr::DType::f32), 4u);
  EXPECT_EQ(dr::dtype_size(dr::DType::f16), 2u);
  EXPECT_EQ(dr::dtype_size(dr::DType::bf16), 2u);
}

TEST(Attention, ReferenceMatchesNaiveAttention) {
  dr_test::Rng rng(1);
  for (const auto& c : std::vector<std::array<std::int64_t, 5>>{
           {1, 37, 1, 8, 32}, {2, 100, 3, 16, 32}, {1, 70, 2, 5, 64}, {2, 150, 1, 3, 128}}) {
    const dr::Shape s = dr_test::make_shape(c[0], c[1], c[2], c[3]);
    const Qkv x = random_qkv(rng, s);
    for (double scale : {0.0, 0.37}) {
      const double sc = scale == 0.0 ? default_scale(s) : scale;
      {
        const Result r = run_reference(x, threads(1, scale), nullptr);
        const auto want = dr_test::naive_attention(x.q, x.k, x.v, sc, nullptr);
        expect_close(r, want.out, want.lse, 1e-6, 1e-6, nullptr, "reference dense");
      }
      const dr::BlockLayout l = random_layout(rng, s.batch, s.heads, s.tokens, static_cast<int>(c[4]));
      const Result r = run_reference(x, threads(1, scale), &l);
      const auto want = dr_test::naive_attention(x.q, x.k, x.v, sc, &l);
      const auto empty = empty_rows(l, s);
      expect_close(r, want.out, want.lse, 1e-6, 1e-6, &empty, "reference with layout");
    }
  }
}

TEST(Attention, FullLayoutEqualsDense) {
  dr_test::Rng rng(2);
  for (int block : {32, 64, 128}) {
    for (const auto& c : std::vector<std::array<std::int64_t, 4>>{{1, 300, 2, 64}, {2, 129, 3, 128}, {1, 64, 1, 80}}) {
      const dr::Shape s = dr_test::make_shape(c[0], c[1], c[2], c[3]);
      SCOPED_TRACE(dr::to_string(s) + " block " + std::to_string(block));
      const Qkv x = random_qkv(rng, s);
      const auto backend = dr::plan_cpu_attention(dr::full_layout(s.batch, s.heads, s.tokens, block), threads(2));
      ASSERT_TRUE(backend);
      EXPECT_FALSE(backend->name().empty());
      EXPECT_EQ(backend->layout().tokens, s.tokens);
      const Result got = run_backend(*backend, x);
      const Result dense = run_reference(x, threads(1), nullptr);
      expect_close(got, as_double(dense.out), as_double(dense.lse), 1e-5, 0.0, nullptr, "full layout vs dense");
    }
  }
}

TEST(Attention, RandomLayoutsMatchReference) {
  dr_test::Rng rng(3);
  // {batch, tokens, heads, head_dim, block}: odd token counts, tokens < block, tiny and large dims.
  const std::vector<std::array<std::int64_t, 5>> cases{
      {1, 1, 1, 1, 32},    {2, 31, 3, 3, 32},    {1, 33, 2, 64, 32},   {2, 100, 3, 80, 64},
      {1, 130, 2, 128, 128}, {2, 200, 3, 64, 128}, {1, 257, 2, 16, 64},  {2, 77, 3, 3, 128},
      {2, 96, 4, 1, 32},   {1, 190, 1, 80, 32}};
  for (const auto& c : cases) {
    const dr::Shape s = dr_test::make_shape(c[0], c[1], c[2], c[3]);
    const int block = static_cast<int>(c[4]);
    SCOPED_TRACE(dr::to_string(s) + " block " + std::to_string(block));
    const Qkv x = random_qkv(rng, s);
    for (int rep = 0; rep < 2; ++rep) {
      const dr::BlockLayout l = random_layout(rng, s.batch, s.heads, s.tokens, block);
      const auto backend = dr::plan_cpu_attention(l, threads(3));
      const Result got = run_backend(*backend, x);
      const Result want = run_reference(x, threads(1), &l);
      const auto empty = empty_rows(l, s);
      expect_close(got, as_double(want.out), as_double(want.lse), 1e-5, 0.0, &empty, "random layout");
      // The reference itself honours empty rows.
      expect_close(want, as_double(want.out), as_double(want.lse), 0.0, 0.0, &empty, "reference empty rows");
    }
  }
}

TEST(Attention, ScaleOptionIsHonoured) {
  dr_test::Rng rng(4);
  const dr::Shape s = dr_test::make_shape(2, 90, 2, 32);
  const Qkv x = random_qkv(rng, s);
  const dr::BlockLayout l = random_layout(rng, 2, 2, 90, 32);
  const auto empty = empty_rows(l, s);
  for (double scale : {0.05, 0.37, 1.0}) {
    const auto want = dr_test::naive_attention(x.q, x.k, x.v, scale, &l);
    const auto backend = dr::plan_cpu_attention(l, threads(2, scale));
    expect_close(run_backend(*backend, x), want.out, want.lse, 1e-5, 0.0, &empty, "backend with scale");
    expect_close(run_reference(x, threads(1, scale), &l), want.out, want.lse, 1e-6, 1e-6, &empty,
                 "reference with scale");
  }
  // The default scale is 1 / sqrt(head_dim), and a different scale changes the result.
  const auto def = dr_test::naive_attention(x.q, x.k, x.v, 1.0 / std::sqrt(32.0), &l);
  expect_close(run_backend(*dr::plan_cpu_attention(l, threads(2)), x), def.out, def.lse, 1e-5, 0.0, &empty,
               "default scale");
  const Result a = run_backend(*dr::plan_cpu_attention(l, threads(2, 0.05)), x);
  const Result b = run_backend(*dr::plan_cpu_attention(l, threads(2, 1.0)), x);
  double diff = 0.0;
  for (std::int64_t i = 0; i < s.elements(); ++i) diff = std::max(diff, std::fabs(double(a.out.get(i)) - b.out.get(i)));
  EXPECT_GT(diff, 1e-2);
}

TEST(Attention, HalfPrecisionInputs) {
  dr_test::Rng rng(5);
  for (dr::DType dt : {dr::DType::f16, dr::DType::bf16}) {
    for (int block : {32, 128}) {
      const dr::Shape s = dr_test::make_shape(2, 150, 2, 64);
      SCOPED_TRACE(dr::to_string(dt) + " block " + std::to_string(block));
      const Qkv half = random_qkv(rng, s, dt);
      const Qkv rounded{dr_test::convert(half.q, dr::DType::f32), dr_test::convert(half.k, dr::DType::f32),
                        dr_test::convert(half.v, dr::DType::f32)};
      const dr::BlockLayout l = random_layout(rng, 2, 2, 150, block);
      const auto empty = empty_rows(l, s);
      const Result want = run_reference(rounded, threads(1), &l);
      // The reference reads half inputs exactly.
      const Result ref_half = run_reference(half, threads(1), &l);
      expect_close(ref_half, as_double(want.out), as_double(want.lse), 0.0, 0.0, &empty, "reference half inputs");
      const auto backend = dr::plan_cpu_attention(l, threads(3));
      expect_close(run_backend(*backend, half), as_double(want.out), as_double(want.lse), 1e-3, 1e-3, &empty,
                   "backend half inputs");
    }
  }
}

TEST(Attention, HalfPrecisionOutputs) {
  dr_test::Rng rng(6);
  const dr::Shape s = dr_test::make_shape(1, 140, 3, 48);
  const Qkv x = random_qkv(rng, s);
  const dr::BlockLayout l = random_layout(rng, 1, 3, 140, 64);
  const auto empty = empty_rows(l, s);
  const Result want = run_reference(x, threads(1), &l);
  const auto backend = dr::plan_cpu_attention(l, threads(2));
  // Half ulp of the format plus the fp32 error.
  const struct {
    dr::DType dtype;
    double rtol;
  } formats[] = {{dr::DType::f16, 0x1.0p-11 + 1e-6}, {dr::DType::bf16, 0x1.0p-8 + 1e-6}};
  for (const auto& f : formats) {
    SCOPED_TRACE(dr::to_string(f.dtype));
    const Result got = run_backend(*backend, x, f.dtype);
    EXPECT_EQ(got.out.dtype(), f.dtype);
    expect_close(got, as_double(want.out), as_double(want.lse), 1e-5, f.rtol, &empty, "backend half output");
    const Result ref = run_reference(x, threads(1), &l, f.dtype);
    expect_close(ref, as_double(want.out), as_double(want.lse), 1e-7, f.rtol, &empty, "reference half output");
  }
}

TEST(Attention, ThreadCountDoesNotChangeBits) {
  dr_test::Rng rng(7);
  const dr::Shape s = dr_test::make_shape(2, 333, 3, 64);
  const Qkv x = random_qkv(rng, s);
  for (int block : {32, 64, 128}) {
    const dr::BlockLayout l = random_layout(rng, 2, 3, 333, block);
    const Result one = run_backend(*dr::plan_cpu_attention(l, threads(1)), x);
    const Result three = run_backend(*dr::plan_cpu_attention(l, threads(3)), x);
    const Result all = run_backend(*dr::plan_cpu_attention(l, threads(0)), x);
    const std::size_t bytes = static_cast<std::size_t>(s.elements()) * sizeof(float);
    EXPECT_EQ(std::memcmp(one.out.view().data, three.out.view().data, bytes), 0) << "block " << block;
    EXPECT_EQ(std::memcmp(one.out.view().data, all.out.view().data, bytes), 0) << "block " << block;
    EXPECT_EQ(std::memcmp(one.lse.data(), three.lse.data(), one.lse.size() * sizeof(float)), 0);
    // Running twice gives the same bits too.
    const Result again = run_backend(*dr::plan_cpu_attention(l, threads(3)), x);
    EXPECT_EQ(std::memcmp(again.out.view().data, three.out.view().data, bytes), 0);
  }
}

TEST(Attention, LseIsOptional) {
  dr_test::Rng rng(8);
  const dr::Shape s = dr_test::make_shape(1, 100, 2, 16);
  const Qkv x = random_qkv(rng, s);
  const dr::BlockLayout l = random_layout(rng, 1, 2, 100, 32);
  const auto backend = dr::plan_cpu_attention(l, threads(2));
  const Result with = run_backend(*backend, x);
  Result without = poisoned_result(s, dr::DType::f32);
  dr::AttentionArgs a = args_for(x, without);
  a.lse = nullptr;
  backend->run(a);
  EXPECT_EQ(std::memcmp(with.out.view().data, without.out.view().data, static_cast<std::size_t>(s.elements()) * 4), 0);
  Result ref = poisoned_result(s, dr::DType::f32);
  dr::AttentionArgs ra = args_for(x, ref);
  ra.lse = nullptr;
  EXPECT_NO_THROW(dr::attention_reference(ra, threads(1), &l));
}

TEST(Attention, SelectedLayoutOnSyntheticVideo) {
  dr::VideoGeometry g;
  g.frames = 6;
  g.height = 6;
  g.width = 10;
  g.block_size = 32;
  g.heads = 2;
  g.head_dim = 32;
  g.text_tokens = 20;
  g.text_placement = dr::TextPlacement::suffix;
  g.order = dr::TokenOrder::tiled3d;
  dr::SyntheticOptions so;
  so.seed = 3;
  const dr::SyntheticQkv syn = dr::make_synthetic_qkv(g, so);
  dr::RadialPriorParams pp;
  pp.gamma = 0.5;
  const dr::RadialPrior prior = dr::build_radial_prior(g, pp);
  dr::SelectionParams sp;
  sp.r_near = 0.5;
  sp.r_far = 0.25;
  const dr::BlockLayout l = dr::select_blocks(prior, dr::pool_blocks(syn.q.view(), syn.k.view(), g), sp);
  const Qkv x{syn.q, syn.k, syn.v};
  const Result got = run_backend(*dr::plan_cpu_attention(l, threads(3)), x);
  const Result want = run_reference(x, threads(1), &l);
  expect_close(got, as_double(want.out), as_double(want.lse), 1e-5, 1e-5, nullptr, "selected layout");
}

TEST(Attention, ArgumentErrorsNameTheTensor) {
  dr_test::Rng rng(9);
  const dr::Shape s = dr_test::make_shape(1, 70, 2, 16);
  const Qkv x = random_qkv(rng, s);
  const dr::BlockLayout l = dr::full_layout(1, 2, 70, 32);
  const auto backend = dr::plan_cpu_attention(l, threads(2));
  Result r = poisoned_result(s, dr::DType::f32);
  const dr::AttentionArgs good = args_for(x, r);
  EXPECT_NO_THROW(dr::check_attention_args(good, &l));
  EXPECT_NO_THROW(dr::check_attention_args(good, nullptr));
  EXPECT_NO_THROW(backend->run(good));

  const dr::HostTensor fewer_tokens = dr_test::random_tensor(rng, dr_test::make_shape(1, 69, 2, 16));
  const dr::HostTensor other_dim = dr_test::random_tensor(rng, dr_test::make_shape(1, 70, 2, 8));
  const dr::HostTensor other_heads = dr_test::random_tensor(rng, dr_test::make_shape(1, 70, 3, 16));
  const dr::HostTensor half_k = dr_test::convert(x.k, dr::DType::f16);
  const dr::HostTensor half_v = dr_test::convert(x.v, dr::DType::bf16);
  dr::HostTensor out_small(dr::DType::f32, dr_test::make_shape(1, 70, 2, 8));

  auto expect_named = [&](dr::AttentionArgs a, std::vector<std::string> words) {
    try {
      backend->run(a);
      ADD_FAILURE() << "run: expected an Error naming " << dr_test::join(words);
    } catch (const dr::Error& e) {
      EXPECT_TRUE(dr_test::names_any(e.what(), words)) << "run: \"" << e.what() << "\" should name " << dr_test::join(words);
    }
    try {
      dr::check_attention_args(a, &l);
      ADD_FAILURE() << "check_attention_args: expected an Error naming " << dr_test::join(words);
    } catch (const dr::Error& e) {
      EXPECT_TRUE(dr_test::names_any(e.what(), words))
          << "check_attention_args: \"" << e.what() << "\" should name " << dr_test::join(words);
    }
    try {
      dr::attention_reference(a, threads(1), &l);
      ADD_FAILURE() << "attention_reference: expected an Error naming " << dr_test::join(words);
    } catch (const dr::Error& e) {
      EXPECT_TRUE(dr_test::names_any(e.what(), words))
          << "attention_reference: \"" << e.what() << "\" should name " << dr_test::join(words);
    }
  };
  dr::AttentionArgs a = good;
  a.k = fewer_tokens.view();
  expect_named(a, {"k"});
  a = good;
  a.v = other_dim.view();
  expect_named(a, {"v"});
  a = good;
  a.k = other_heads.view();
  expect_named(a, {"k"});
  a = good;
  a.k = half_k.view();
  expect_named(a, {"k"});
  a = good;
  a.v = half_v.view();
  expect_named(a, {"v"});
  a = good;
  a.out = out_small.mutable_view();
  expect_named(a, {"out"});
  a = good;
  a.q.data = nullptr;
  expect_named(a, {"q"});
  a = good;
  a.v.data = nullptr;
  expect_named(a, {"v"});
  a = good;
  a.out.data = nullptr;
  expect_named(a, {"out"});

  // Every tensor agrees with the others but not with the layout.
  const Qkv longer = random_qkv(rng, dr_test::make_shape(1, 100, 2, 16));
  Result lr = poisoned_result(longer.q.shape(), dr::DType::f32);
  const dr::AttentionArgs la = args_for(longer, lr);
  EXPECT_NO_THROW(dr::check_attention_args(la, nullptr));
  EXPECT_DR_ERROR(backend->run(la), "q", "layout", "tokens");
  EXPECT_DR_ERROR(dr::check_attention_args(la, &l), "q", "layout", "tokens");
  const Qkv more_heads = random_qkv(rng, dr_test::make_shape(1, 70, 3, 16));
  Result hr = poisoned_result(more_heads.q.shape(), dr::DType::f32);
  EXPECT_DR_ERROR(backend->run(args_for(more_heads, hr)), "q", "layout", "heads");

  // A scale that is not finite: refused by the plan and by the reference, with or without a layout.
  for (const double bad : {std::nan(""), HUGE_VAL, -HUGE_VAL}) {
    EXPECT_DR_FIELD(dr::plan_cpu_attention(l, threads(1, bad)), "options.scale");
    EXPECT_DR_FIELD(dr::attention_reference(good, threads(1, bad), &l), "options.scale");
    EXPECT_DR_FIELD(dr::attention_reference(good, threads(1, bad), nullptr), "options.scale");
  }
}

TEST(Attention, PlanRejectsInvalidLayout) {
  dr::BlockLayout l = dr::full_layout(1, 1, 100, 32);
  l.col_indices[2] = 9;
  EXPECT_THROW(dr::plan_cpu_attention(l, threads(1)), dr::Error);
  dr::BlockLayout unsorted = dr_test::make_layout(1, 1, 64, 32, {{1, 0}, {1}});
  EXPECT_THROW(dr::plan_cpu_attention(unsorted, threads(1)), dr::Error);
}

TEST(Attention, SkippedBlocksAreNeverRead) {
  // A key block outside the layout holds huge values; rows that skip it must stay finite.
  dr_test::Rng rng(10);
  const dr::Shape s = dr_test::make_shape(1, 64, 1, 8);
  Qkv x = random_qkv(rng, s);
  // Key token 40 (block 1) is very large; row block 0 only attends block 0.
  for (std::int64_t d = 0; d < 8; ++d) x.k.set(x.k.index(0, 40, 0, d), 1e30f);
  const dr::BlockLayout l = dr_test::make_layout(1, 1, 64, 32, {{0}, {0}});
  const Result got = run_backend(*dr::plan_cpu_attention(l, threads(1)), x);
  for (std::int64_t t = 0; t < 64; ++t)
    for (std::int64_t d = 0; d < 8; ++d) ASSERT_TRUE(std::isfinite(got.out.get(got.out.index(0, t, 0, d))));
}
