// apply_rotary() (rotary.h) against the stock arithmetic written out with every product and sum
// rounded on its own (volatile intermediates keep the compiler from fusing them), with and without
// the RMSNorm first, and its errors.
#include "dynamicrad/rotary.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "dynamicrad/device.h"
#include "test_support.h"

namespace dr = dynamicrad;

namespace {

struct Case {
  dr::DType dtype;
  dr::Shape shape;
};

// x rounded to `dtype` and back, as a HostTensor element of that dtype holds it.
float round_to(dr::DType dtype, float v) {
  dr::HostTensor t(dtype, dr_test::make_shape(1, 1, 1, 1));
  t.set(0, v);
  return t.get(0);
}

// Random inputs of one case: x, the rotary tables and a norm weight (rounded to x's dtype, as a
// model's weight is).
struct Inputs {
  dr::HostTensor x;
  std::vector<float> cos, sin, weight;
};

Inputs make_inputs(dr_test::Rng& rng, const Case& c) {
  const dr::Shape& s = c.shape;
  Inputs in{dr_test::convert(dr_test::random_tensor(rng, s, 3.0), c.dtype), {}, {}, {}};
  in.cos.resize(static_cast<std::size_t>(s.tokens * s.head_dim));
  in.sin.resize(in.cos.size());
  in.weight.resize(static_cast<std::size_t>(s.heads * s.head_dim));
  for (float& v : in.cos) v = static_cast<float>(rng.normal());
  for (float& v : in.sin) v = static_cast<float>(rng.normal());
  for (float& v : in.weight) v = round_to(c.dtype, static_cast<float>(1.0 + 0.3 * rng.normal()));
  return in;
}

// apply_rotary() on the CPU over `in` (x and the tables) with the norm and rotation options of `a`;
// the output starts poisoned.
dr::HostTensor run(const Inputs& in, dr::RotaryArgs a) {
  dr::HostTensor out(in.x.dtype(), in.x.shape());
  dr_test::fill(out, 12345.0f);
  a.x = in.x.view();
  a.out = out.mutable_view();
  a.cos = in.cos.data();
  a.sin = in.sin.data();
  a.threads = 3;
  dr::apply_rotary(a, dr::Device::cpu);
  return out;
}

// The stock rotation written out, every product and sum rounded on its own, of the values
// `input(b, n, h, i)` (x itself, or x after the norm).
template <class Input>
void expect_stock_rotation(const Inputs& in, const dr::HostTensor& out, Input input) {
  const dr::Shape& s = in.x.shape();
  dr::HostTensor expected(in.x.dtype(), s);
  for (std::int64_t b = 0; b < s.batch; ++b) {
    for (std::int64_t n = 0; n < s.tokens; ++n) {
      for (std::int64_t h = 0; h < s.heads; ++h) {
        for (std::int64_t i = 0; i < s.head_dim; i += 2) {
          const std::int64_t at = in.x.index(b, n, h, i);
          const float even = input(b, n, h, i), odd = input(b, n, h, i + 1);
          const float co = in.cos[static_cast<std::size_t>(n * s.head_dim + i)];
          const float si = in.sin[static_cast<std::size_t>(n * s.head_dim + i + 1)];
          volatile float ec = even * co, os = odd * si, es = even * si, oc = odd * co;
          expected.set(at, ec - os);
          expected.set(at + 1, es + oc);
        }
      }
    }
  }
  for (std::int64_t i = 0; i < s.elements(); ++i) {
    ASSERT_EQ(out.get(i), expected.get(i)) << dr::to_string(in.x.dtype()) << " element " << i;
  }
}

TEST(Rotary, MatchesTheStockArithmeticBitForBit) {
  dr_test::Rng rng(5);
  for (const Case& c : {Case{dr::DType::f32, dr_test::make_shape(2, 13, 3, 8)},
                        Case{dr::DType::bf16, dr_test::make_shape(1, 37, 2, 64)},
                        Case{dr::DType::f16, dr_test::make_shape(3, 5, 1, 2)}}) {
    const Inputs in = make_inputs(rng, c);
    const dr::HostTensor out = run(in, dr::RotaryArgs{});
    expect_stock_rotation(in, out, [&](std::int64_t b, std::int64_t n, std::int64_t h, std::int64_t i) {
      return in.x.get(in.x.index(b, n, h, i));
    });
  }
}

TEST(Rotary, NormThenRotateFollowsTheFormulaBitForBit) {
  dr_test::Rng rng(6);
  for (const Case& c : {Case{dr::DType::f32, dr_test::make_shape(2, 7, 3, 8)},
                        Case{dr::DType::bf16, dr_test::make_shape(1, 19, 5, 64)},
                        Case{dr::DType::f16, dr_test::make_shape(3, 4, 2, 6)}}) {
    const dr::Shape& s = c.shape;
    const std::int64_t width = s.heads * s.head_dim;
    const Inputs in = make_inputs(rng, c);
    const double eps = 1e-6;
    dr::RotaryArgs norm;
    norm.norm_weight = in.weight.data();
    norm.norm_eps = eps;
    const dr::HostTensor out = run(in, norm);
    // r of every (batch, token): 1 / sqrt(mean square + eps), the sum in double, rounded to float
    std::vector<float> r(static_cast<std::size_t>(s.batch * s.tokens));
    for (std::int64_t row = 0; row < s.batch * s.tokens; ++row) {
      double sum = 0.0;
      for (std::int64_t j = 0; j < width; ++j) {
        const double v = in.x.get(row * width + j);
        sum += v * v;
      }
      r[static_cast<std::size_t>(row)] = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(width) + eps));
    }
    expect_stock_rotation(in, out, [&](std::int64_t b, std::int64_t n, std::int64_t h, std::int64_t i) {
      volatile float scaled = in.x.get(in.x.index(b, n, h, i)) * r[static_cast<std::size_t>(b * s.tokens + n)];
      volatile float weighted = scaled * in.weight[static_cast<std::size_t>(h * s.head_dim + i)];
      return round_to(c.dtype, weighted);
    });
  }
}

TEST(Rotary, NormNormalisesEveryTokenOverAllHeads) {
  // With cos = 1 and sin = 0 the rotation is the identity: the output is the normalised x, whose
  // mean square over a token's heads x head_dim values is 1 (weight 1, eps 0).
  const dr::Shape s = dr_test::make_shape(2, 5, 4, 16);
  dr_test::Rng rng(7);
  const dr::HostTensor x = dr_test::random_tensor(rng, s, 3.0);
  std::vector<float> cos(static_cast<std::size_t>(s.tokens * s.head_dim), 1.0f), sin(cos.size(), 0.0f);
  std::vector<float> weight(static_cast<std::size_t>(s.heads * s.head_dim), 1.0f);
  dr::HostTensor out(dr::DType::f32, s);
  dr::RotaryArgs a;
  a.x = x.view();
  a.out = out.mutable_view();
  a.cos = cos.data();
  a.sin = sin.data();
  a.norm_weight = weight.data();
  dr::apply_rotary(a, dr::Device::cpu);
  for (std::int64_t b = 0; b < s.batch; ++b) {
    for (std::int64_t n = 0; n < s.tokens; ++n) {
      double mean_square = 0.0;
      for (std::int64_t j = 0; j < s.heads * s.head_dim; ++j) {
        const double v = out.get(out.index(b, n, 0, 0) + j);
        mean_square += v * v / static_cast<double>(s.heads * s.head_dim);
      }
      EXPECT_NEAR(mean_square, 1.0, 1e-5) << "batch " << b << " token " << n;
    }
  }
}

TEST(Rotary, ErrorsNameTheField) {
  dr::HostTensor x(dr::DType::f32, dr_test::make_shape(1, 4, 1, 6)), out(dr::DType::f32, x.shape());
  std::vector<float> table(24, 1.0f);
  dr::RotaryArgs a;
  a.x = x.view();
  a.out = out.mutable_view();
  a.cos = table.data();
  a.sin = table.data();
  const auto expect_field = [&](dr::RotaryArgs args, const char* field) {
    try {
      dr::apply_rotary(args, dr::Device::cpu);
      ADD_FAILURE() << "accepted; expected an error naming " << field;
    } catch (const dr::Error& e) {
      EXPECT_EQ(e.field(), field) << e.what();
    }
  };
  dr::RotaryArgs b = a;
  b.cos = nullptr;
  expect_field(b, "cos");
  b = a;
  b.out = dr::MutableTensor{const_cast<void*>(a.x.data), dr::DType::f32, x.shape()};
  expect_field(b, "out");
  b = a;
  b.out.shape.tokens = 3;
  expect_field(b, "out");
  b = a;
  b.out.dtype = dr::DType::bf16;
  expect_field(b, "out");
  dr::HostTensor odd(dr::DType::f32, dr_test::make_shape(1, 4, 1, 5)), odd_out(dr::DType::f32, odd.shape());
  b = a;
  b.x = odd.view();
  b.out = odd_out.mutable_view();
  expect_field(b, "x");
  std::vector<float> weight(6, 1.0f);
  for (const double eps : {-1e-6, std::nan(""), HUGE_VAL}) {
    b = a;
    b.norm_weight = weight.data();
    b.norm_eps = eps;
    expect_field(b, "norm_eps");
  }
  for (const std::int64_t rotated : {-2, 5}) {
    b = a;
    b.rotated_tokens = rotated;
    expect_field(b, "rotated_tokens");
  }
  if (!dr::built_with_cuda()) {
    EXPECT_THROW(dr::apply_rotary(a, dr::Device::cuda), dr::Error);
  }
}

// HunyuanVideo's arithmetic: diffusers' RMSNorm over each head (x * r rounded to x's dtype before a
// 16-bit weight multiplies), apply_rotary_emb's own table entry for every output, and tokens at or
// past rotated_tokens normalised but not rotated.
TEST(Rotary, PerHeadNormAndPerElementPairsFollowTheFormulaBitForBit) {
  dr_test::Rng rng(8);
  for (const Case& c : {Case{dr::DType::f32, dr_test::make_shape(2, 7, 3, 8)},
                        Case{dr::DType::bf16, dr_test::make_shape(2, 19, 5, 64)},
                        Case{dr::DType::f16, dr_test::make_shape(1, 6, 2, 6)}}) {
    const dr::Shape& s = c.shape;
    const std::int64_t rotated = s.tokens - 3;
    Inputs in = make_inputs(rng, c);
    in.weight.resize(static_cast<std::size_t>(s.head_dim));
    in.cos.resize(static_cast<std::size_t>(rotated * s.head_dim));  // rows for the rotated tokens only
    in.sin.resize(in.cos.size());
    const bool after_rounding = c.dtype != dr::DType::f32;
    dr::RotaryArgs a;
    a.pairs = dr::RotaryPairs::per_element;
    a.rotated_tokens = rotated;
    a.norm_weight = in.weight.data();
    a.norm_scope = dr::NormScope::head;
    a.norm_weighting = after_rounding ? dr::NormWeighting::after_rounding : dr::NormWeighting::in_float;
    a.norm_eps = 1e-6;
    const dr::HostTensor out = run(in, a);
    for (std::int64_t b = 0; b < s.batch; ++b) {
      for (std::int64_t n = 0; n < s.tokens; ++n) {
        for (std::int64_t h = 0; h < s.heads; ++h) {
          const std::int64_t base = in.x.index(b, n, h, 0);
          double sum = 0.0;
          for (std::int64_t i = 0; i < s.head_dim; ++i) sum += static_cast<double>(in.x.get(base + i)) * in.x.get(base + i);
          const float r = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(s.head_dim) + 1e-6));
          const auto normed = [&](std::int64_t i) {
            volatile float scaled = in.x.get(base + i) * r;
            const float rounded = after_rounding ? round_to(c.dtype, scaled) : scaled;
            volatile float weighted = rounded * in.weight[static_cast<std::size_t>(i)];
            return round_to(c.dtype, weighted);
          };
          for (std::int64_t i = 0; i < s.head_dim; i += 2) {
            const float even = normed(i), odd = normed(i + 1);
            float want_even = even, want_odd = odd;
            if (n < rotated) {
              const auto at = [&](const std::vector<float>& t, std::int64_t k) {
                return t[static_cast<std::size_t>(n * s.head_dim + k)];
              };
              // (x.float() * cos + x_rotated.float() * sin), x_rotated = (-odd, even) per pair
              volatile float ec = even * at(in.cos, i), os = -odd * at(in.sin, i);
              volatile float oc = odd * at(in.cos, i + 1), es = even * at(in.sin, i + 1);
              want_even = round_to(c.dtype, ec + os);
              want_odd = round_to(c.dtype, oc + es);
            }
            ASSERT_EQ(out.get(base + i), want_even) << dr::to_string(c.dtype) << " b" << b << " n" << n << " h" << h << " i" << i;
            ASSERT_EQ(out.get(base + i + 1), want_odd) << dr::to_string(c.dtype) << " b" << b << " n" << n << " h" << h << " i" << i + 1;
          }
        }
      }
    }
  }
}

TEST(Rotary, NoRotatedTokensLeavesTheNormAlone) {
  // rotated_tokens = 0 without a norm copies x; the tables are never read (null would be refused,
  // so any pointer will do).
  const dr::Shape s = dr_test::make_shape(1, 3, 2, 4);
  dr_test::Rng rng(9);
  const dr::HostTensor x = dr_test::random_tensor(rng, s, 1.0);
  dr::HostTensor out(dr::DType::f32, s);
  const float unused = 0.0f;
  dr::RotaryArgs a;
  a.x = x.view();
  a.out = out.mutable_view();
  a.cos = &unused;
  a.sin = &unused;
  a.rotated_tokens = 0;
  dr::apply_rotary(a, dr::Device::cpu);
  for (std::int64_t i = 0; i < s.elements(); ++i) ASSERT_EQ(out.get(i), x.get(i)) << i;
}

}  // namespace
