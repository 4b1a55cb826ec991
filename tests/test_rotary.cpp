// apply_rotary() (rotary.h) against the stock arithmetic written out with every product and sum
// rounded on its own (volatile intermediates keep the compiler from fusing them), with and without
// the RMSNorm first, and its errors.
#include "dynamicrad/rotary.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "dynamicrad/device.h"
#include "dynamicrad/geometry.h"
#include "dynamicrad/select.h"
#include "pooled_support.h"
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

// rotated_tokens = tokens rotates every token: the bits of -1 (the default).
TEST(Rotary, RotatedTokensEqualToTheTokensIsEveryToken) {
  dr_test::Rng rng(21);
  const Inputs in = make_inputs(rng, Case{dr::DType::f32, dr_test::make_shape(2, 5, 2, 6)});
  dr::RotaryArgs all;
  dr::RotaryArgs every = all;
  every.rotated_tokens = 5;
  const dr::HostTensor want = run(in, all);
  const dr::HostTensor got = run(in, every);
  for (std::int64_t i = 0; i < want.shape().elements(); ++i) ASSERT_EQ(got.get(i), want.get(i)) << i;
  expect_stock_rotation(in, got, [&](std::int64_t b, std::int64_t n, std::int64_t h, std::int64_t i) {
    return in.x.get(in.x.index(b, n, h, i));
  });
}

TEST(Rotary, NoRotatedTokensLeavesTheNormAlone) {
  // rotated_tokens = 0 without a norm copies x; the tables are never read, so they may be null (an
  // empty [0, head_dim] table has no data). With any token rotated, null tables are refused.
  const dr::Shape s = dr_test::make_shape(1, 3, 2, 4);
  dr_test::Rng rng(9);
  const dr::HostTensor x = dr_test::random_tensor(rng, s, 1.0);
  dr::HostTensor out(dr::DType::f32, s);
  dr::RotaryArgs a;
  a.x = x.view();
  a.out = out.mutable_view();
  a.rotated_tokens = 0;
  dr::apply_rotary(a, dr::Device::cpu);
  for (std::int64_t i = 0; i < s.elements(); ++i) ASSERT_EQ(out.get(i), x.get(i)) << i;
  a.rotated_tokens = 1;
  EXPECT_DR_FIELD(dr::apply_rotary(a, dr::Device::cpu), "cos");
  const float table[4] = {};
  a.cos = table;
  EXPECT_DR_FIELD(dr::apply_rotary(a, dr::Device::cpu), "sin");
}

}  // namespace

// The pooled output (block means of `out` taken in the same pass, for select.h's PooledPrefix): it
// leaves `out` as it is and equals pool_blocks()' arithmetic on `out` bit for bit.
namespace {

// A quiet NaN with a payload of its own, so "left untouched" means the very bits written before.
float poison() {
  const std::uint32_t bits = 0x7fc0beefu;
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

std::uint32_t float_bits(float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return bits;
}

bool same_bytes(const dr::HostTensor& a, const dr::HostTensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.view().data, b.view().data,
                     static_cast<std::size_t>(a.shape().elements()) * dr::dtype_size(a.dtype())) == 0;
}

struct Pooling {
  int block;           // pool_block
  std::int64_t blocks; // pooled_blocks
  int threads;
};

struct PooledRun {
  dr::HostTensor out;
  std::vector<float> pooled;  // [batch, heads, blocks, head_dim], then `tail` poisoned floats
};

// apply_rotary() with the pooled output: out poisoned as run() does, the pooled buffer poisoned
// (with `tail` floats past [batch, heads, blocks, head_dim] that must stay so).
PooledRun run_pooled(const Inputs& in, dr::RotaryArgs a, const Pooling& p, std::size_t tail) {
  const dr::Shape& s = in.x.shape();
  PooledRun r{dr::HostTensor(in.x.dtype(), s),
              std::vector<float>(static_cast<std::size_t>(s.batch * s.heads * p.blocks * s.head_dim) + tail, poison())};
  dr_test::fill(r.out, 12345.0f);
  a.x = in.x.view();
  a.out = r.out.mutable_view();
  a.cos = in.cos.data();
  a.sin = in.sin.data();
  a.threads = p.threads;
  a.pooled = r.pooled.data();
  a.pool_block = p.block;
  a.pooled_blocks = p.blocks;
  dr::apply_rotary(a, dr::Device::cpu);
  return r;
}

// The pooled region holds the sequential means of r.out bit for bit; the `tail` floats after it keep
// their poison.
void expect_pooled_means(const PooledRun& r, const Pooling& p, std::size_t tail) {
  const dr::Shape& s = r.out.shape();
  const std::vector<float> want = dr_test::sequential_means(r.out, p.block, p.blocks);
  ASSERT_EQ(r.pooled.size(), want.size() + tail);
  for (std::size_t i = 0; i < want.size(); ++i) {
    const std::int64_t n = static_cast<std::int64_t>(i);
    ASSERT_EQ(float_bits(r.pooled[i]), float_bits(want[i]))
        << "pooled[b " << n / (s.head_dim * p.blocks * s.heads) << ", h " << (n / (s.head_dim * p.blocks)) % s.heads
        << ", blk " << (n / s.head_dim) % p.blocks << ", d " << n % s.head_dim << "] = " << r.pooled[i]
        << ", the sequential mean of out is " << want[i];
  }
  for (std::size_t i = want.size(); i < r.pooled.size(); ++i)
    ASSERT_EQ(float_bits(r.pooled[i]), float_bits(poison())) << "pooled written " << i - want.size()
                                                             << " floats past [batch, heads, pooled_blocks, head_dim]";
}

}  // namespace

TEST(Rotary, PooledMeansAreTheBlockMeansOfOutBitForBit) {
  dr_test::Rng rng(21);
  constexpr std::int64_t kTokens = 37;
  // 37 tokens: blocks of 8 (5 blocks, the last of 5 tokens), fewer blocks than there are, one-token
  // blocks, one block longer than the sequence, blocks of 5 (the last of 2 tokens), two full blocks
  // of 16; single and multi-threaded.
  const std::vector<Pooling> poolings = {{8, 5, 3}, {8, 3, 1}, {1, kTokens, 0}, {64, 1, 2}, {5, 8, 3}, {16, 2, 0}};
  int runs = 0;
  for (const dr::DType dtype : {dr::DType::f32, dr::DType::f16, dr::DType::bf16}) {
    for (const dr::NormScope scope : {dr::NormScope::token, dr::NormScope::head}) {
      for (const bool norm : {false, true}) {
        for (const std::int64_t rotated : {std::int64_t{-1}, std::int64_t{30}, std::int64_t{0}}) {
          for (const std::int64_t batch : {1, 2}) {
            const Case c{dtype, dr_test::make_shape(batch, kTokens, 3, 8)};
            Inputs in = make_inputs(rng, c);
            dr::RotaryArgs a;
            a.rotated_tokens = rotated;
            if (scope == dr::NormScope::head) {
              // HunyuanVideo's arithmetic: per-head norm, each output its own table entries
              in.weight.resize(static_cast<std::size_t>(c.shape.head_dim));
              a.pairs = dr::RotaryPairs::per_element;
              a.norm_scope = dr::NormScope::head;
              a.norm_weighting = dtype == dr::DType::f32 ? dr::NormWeighting::in_float : dr::NormWeighting::after_rounding;
            }
            if (norm) {
              a.norm_weight = in.weight.data();
              a.norm_eps = 1e-6;
            }
            const dr::HostTensor plain = run(in, a);
            for (const Pooling& p : poolings) {
              SCOPED_TRACE(dr::to_string(dtype) + (scope == dr::NormScope::head ? " head" : " token") +
                           (norm ? " norm" : " no norm") + " rotated_tokens " + std::to_string(rotated) +
                           " batch " + std::to_string(batch) + " pool_block " + std::to_string(p.block) +
                           " pooled_blocks " + std::to_string(p.blocks) + " threads " + std::to_string(p.threads));
              const std::size_t tail = static_cast<std::size_t>(3 * c.shape.head_dim + 5);
              const PooledRun r = run_pooled(in, a, p, tail);
              ASSERT_TRUE(same_bytes(r.out, plain)) << "out with pooling differs from out without";
              expect_pooled_means(r, p, tail);
              if (HasFatalFailure()) return;
              ++runs;
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(runs, 3 * 2 * 2 * 3 * 2 * 6);
}

// With the geometry's blocks, pooled equals pool_blocks() of `out` (for Q and K alike), on longer
// sequences with a short last block and every thread.
TEST(Rotary, PooledMeansEqualPoolBlocksOfOut) {
  dr_test::Rng rng(22);
  struct Long {
    dr::DType dtype;
    std::int64_t tokens, heads, head_dim;
    int block;
  };
  for (const Long& l : {Long{dr::DType::bf16, 300, 2, 64, 128}, Long{dr::DType::f16, 100, 3, 16, 32},
                        Long{dr::DType::f32, 161, 2, 8, 64}}) {
    dr::VideoGeometry g;
    g.frames = 1;
    g.height = 1;
    g.width = l.tokens;
    g.block_size = l.block;
    g.batch = 2;
    g.heads = l.heads;
    g.head_dim = l.head_dim;
    const std::int64_t blocks = dr::num_blocks(g);
    ASSERT_NE(l.tokens % l.block, 0) << "the last block should be short";
    const Case c{l.dtype, dr_test::make_shape(2, l.tokens, l.heads, l.head_dim)};
    const Inputs in = make_inputs(rng, c);
    dr::RotaryArgs a;
    a.norm_weight = in.weight.data();
    a.norm_eps = 1e-6;
    for (const std::int64_t pooled_blocks : {blocks, blocks - 1}) {
      SCOPED_TRACE(dr::to_string(l.dtype) + " tokens " + std::to_string(l.tokens) + " pooled_blocks " +
                   std::to_string(pooled_blocks));
      const Pooling p{l.block, pooled_blocks, 0};
      const PooledRun r = run_pooled(in, a, p, 7);
      const dr::PooledBlocks want = dr::pool_blocks(r.out.view(), r.out.view(), g);
      for (std::int64_t bh = 0; bh < 2 * l.heads; ++bh)
        for (std::int64_t blk = 0; blk < pooled_blocks; ++blk)
          for (std::int64_t d = 0; d < l.head_dim; ++d) {
            const float got = r.pooled[static_cast<std::size_t>((bh * pooled_blocks + blk) * l.head_dim + d)];
            const float expected = want.q[static_cast<std::size_t>((bh * blocks + blk) * l.head_dim + d)];
            ASSERT_EQ(float_bits(got), float_bits(expected))
                << "(batch x head " << bh << ", blk " << blk << ", d " << d << "): " << got << " vs pool_blocks " << expected;
          }
      expect_pooled_means(r, p, 7);
    }
  }
}

TEST(Rotary, PoolingErrorsNameTheField) {
  const dr::Shape s = dr_test::make_shape(1, 37, 2, 8);
  dr_test::Rng rng(23);
  const dr::HostTensor x = dr_test::random_tensor(rng, s);
  dr::HostTensor out(dr::DType::f32, s);
  std::vector<float> table(static_cast<std::size_t>(s.tokens * s.head_dim), 0.5f);
  // Room for more blocks than any accepted call writes, so a call wrongly accepted fails the test
  // rather than overrunning the buffer.
  std::vector<float> pooled(static_cast<std::size_t>(s.batch * s.heads * (s.tokens + 64) * s.head_dim), 0.0f);
  dr::RotaryArgs a;
  a.x = x.view();
  a.out = out.mutable_view();
  a.cos = table.data();
  a.sin = table.data();
  a.pooled = pooled.data();
  a.pool_block = 8;
  a.pooled_blocks = 5;  // ceil(37 / 8)
  EXPECT_NO_THROW(dr::apply_rotary(a, dr::Device::cpu));
  dr::RotaryArgs b = a;
  for (const int block : {0, -1, -8}) {
    b = a;
    b.pool_block = block;
    b.pooled_blocks = 1;
    EXPECT_DR_FIELD(dr::apply_rotary(b, dr::Device::cpu), "pool_block");
  }
  for (const std::int64_t blocks : {std::int64_t{0}, std::int64_t{-1}, std::int64_t{6}, std::int64_t{100}}) {
    b = a;
    b.pooled_blocks = blocks;
    EXPECT_DR_FIELD(dr::apply_rotary(b, dr::Device::cpu), "pooled_blocks");
  }
  // The bound is ceil(tokens / pool_block): 37 tokens hold one block of 37 or more, two of 36.
  for (const auto& [block, blocks, ok] : std::vector<std::tuple<int, std::int64_t, bool>>{
           {37, 1, true}, {37, 2, false}, {36, 2, true}, {36, 3, false}, {1000, 1, true}, {1000, 2, false},
           {1, 37, true}, {1, 38, false}}) {
    b = a;
    b.pool_block = block;
    b.pooled_blocks = blocks;
    SCOPED_TRACE("pool_block " + std::to_string(block) + " pooled_blocks " + std::to_string(blocks));
    if (ok) {
      EXPECT_NO_THROW(dr::apply_rotary(b, dr::Device::cpu));
    } else {
      EXPECT_DR_FIELD(dr::apply_rotary(b, dr::Device::cpu), "pooled_blocks");
    }
  }
  // Without `pooled` the pooling fields keep their defaults and are not checked.
  b = a;
  b.pooled = nullptr;
  b.pool_block = 0;
  b.pooled_blocks = 0;
  EXPECT_NO_THROW(dr::apply_rotary(b, dr::Device::cpu));
}
