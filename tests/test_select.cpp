// Tests for select.h: block pooling and the two selection modes, checked against scores recomputed
// here from PooledBlocks.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "dynamicrad/geometry.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"
#include "dynamicrad/synthetic.h"
#include "pooled_support.h"
#include "test_support.h"

namespace dr = dynamicrad;
using dr_test::describe;

namespace {

dr::PooledBlocks random_pooled(dr_test::Rng& rng, std::int64_t batch, std::int64_t heads,
                               std::int64_t blocks, std::int64_t head_dim, double stddev) {
  dr::PooledBlocks p;
  p.batch = batch;
  p.heads = heads;
  p.blocks = blocks;
  p.head_dim = head_dim;
  const std::size_t n = static_cast<std::size_t>(batch * heads * blocks * head_dim);
  p.q.resize(n);
  p.k.resize(n);
  for (auto& x : p.q) x = static_cast<float>(stddev * rng.normal());
  for (auto& x : p.k) x = static_cast<float>(stddev * rng.normal());
  return p;
}

std::size_t pooled_index(const dr::PooledBlocks& p, std::int64_t b, std::int64_t h, std::int64_t blk,
                         std::int64_t d) {
  return static_cast<std::size_t>(((b * p.heads + h) * p.blocks + blk) * p.head_dim + d);
}

// block_score() written from its header: eight double lanes, lane j summing the products of
// elements j, j + 8, ... in ascending order, combined pairwise, times scale.
double lane_score(const float* q, const float* k, std::int64_t head_dim, double scale) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (std::int64_t i = 0; i < head_dim; ++i) lane[i % 8] += static_cast<double>(q[i]) * static_cast<double>(k[i]);
  return (((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]))) * scale;
}

// z(R, C) = qbar(R) . kbar(C) / sqrt(head_dim), in the header's fixed order.
double score(const dr::PooledBlocks& p, std::int64_t b, std::int64_t h, std::int64_t R, std::int64_t C) {
  return lane_score(&p.q[pooled_index(p, b, h, R, 0)], &p.k[pooled_index(p, b, h, C, 0)], p.head_dim,
                    1.0 / std::sqrt(static_cast<double>(p.head_dim)));
}

std::int64_t block_tokens(const dr::RadialPrior& prior, std::int64_t C) {
  const std::int64_t T = dr::total_tokens(prior.geometry);
  const std::int64_t B = prior.geometry.block_size;
  return std::min(T, (C + 1) * B) - C * B;
}

struct SelectionTally {
  std::int64_t near_kept = 0, near_dropped = 0, far_kept = 0, far_dropped = 0, skipped_ties = 0;
};

// Checks every contract of select_blocks for one input. r values must be dyadic (exact r * n).
void check_selection(const dr::RadialPrior& prior, const dr::PooledBlocks& pooled,
                     const dr::SelectionParams& params, const dr::BlockLayout& layout,
                     SelectionTally& tally) {
  ASSERT_EQ(layout.batch, pooled.batch);
  ASSERT_EQ(layout.heads, pooled.heads);
  ASSERT_EQ(layout.blocks, prior.blocks);
  ASSERT_EQ(layout.block_size, prior.geometry.block_size);
  ASSERT_EQ(layout.tokens, dr::total_tokens(prior.geometry));
  ASSERT_NO_THROW(dr::validate(layout));
  std::int64_t reported = 0;
  for (std::int64_t b = 0; b < pooled.batch; ++b)
    for (std::int64_t h = 0; h < pooled.heads; ++h)
      for (std::int64_t R = 0; R < prior.blocks; ++R) {
        const auto cols = dr_test::row_cols(layout, layout.row(b, h, R));
        const std::set<std::int32_t> kept(cols.begin(), cols.end());
        ASSERT_FALSE(kept.empty()) << "empty row (b=" << b << ", h=" << h << ", R=" << R << ")";
        std::vector<std::int32_t> near, far;
        std::set<std::int32_t> in_prior;
        for (std::int64_t e = prior.row_offsets[R]; e < prior.row_offsets[R + 1]; ++e) {
          const std::int32_t C = prior.col_indices[e];
          in_prior.insert(C);
          if (prior.kinds[e] == dr::BlockKind::forced) {
            ASSERT_TRUE(kept.count(C)) << "forced block (" << R << ", " << C << ") dropped, b=" << b << " h=" << h;
          } else {
            (prior.kinds[e] == dr::BlockKind::near ? near : far).push_back(C);
          }
        }
        for (std::int32_t C : kept) ASSERT_TRUE(in_prior.count(C)) << "block (" << R << ", " << C << ") outside the prior";

        if (params.mode == dr::SelectionMode::static_ratio) {
          auto check_group = [&](const std::vector<std::int32_t>& group, double r, const char* name,
                                 std::int64_t& kept_count, std::int64_t& dropped_count) {
            const std::int64_t want = static_cast<std::int64_t>(std::ceil(r * static_cast<double>(group.size())));
            // The expected set: the top `want` by score, ties to the lower key block index.
            std::vector<std::int32_t> order = group;
            std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t c) {
              const double za = score(pooled, b, h, R, a), zc = score(pooled, b, h, R, c);
              return za > zc || (za == zc && a < c);
            });
            std::set<std::int32_t> expected(order.begin(), order.begin() + want);
            std::int64_t in = 0;
            for (std::int32_t C : group) {
              const bool is_kept = kept.count(C) > 0;
              in += is_kept;
              if (is_kept != (expected.count(C) > 0) && reported++ < 10)
                ADD_FAILURE() << name << " block (" << R << ", " << C << ") b=" << b << " h=" << h << " z="
                              << score(pooled, b, h, R, C) << ": expected "
                              << (expected.count(C) ? "kept" : "dropped") << " among the top " << want << " of "
                              << group.size() << " (r=" << r << ")";
            }
            kept_count += in;
            dropped_count += static_cast<std::int64_t>(group.size()) - in;
            EXPECT_EQ(in, want) << name << " candidates kept in row (b=" << b << ", h=" << h << ", R=" << R
                                << ") of " << group.size() << " with r=" << r;
          };
          check_group(near, params.r_near, "near", tally.near_kept, tally.near_dropped);
          check_group(far, params.r_far, "far", tally.far_kept, tally.far_dropped);
        } else {
          // p(C) = |C| exp(z) / sum over the prior row of |C'| exp(z').
          double zmax = -std::numeric_limits<double>::infinity();
          for (std::int32_t C : in_prior) zmax = std::max(zmax, score(pooled, b, h, R, C));
          double sum = 0.0;
          for (std::int32_t C : in_prior)
            sum += static_cast<double>(block_tokens(prior, C)) * std::exp(score(pooled, b, h, R, C) - zmax);
          auto check_group = [&](const std::vector<std::int32_t>& group, double tau, const char* name,
                                 std::int64_t& kept_count, std::int64_t& dropped_count) {
            for (std::int32_t C : group) {
              const double p =
                  static_cast<double>(block_tokens(prior, C)) * std::exp(score(pooled, b, h, R, C) - zmax) / sum;
              const bool is_kept = kept.count(C) > 0;
              kept_count += is_kept;
              dropped_count += !is_kept;
              if (std::fabs(p - tau) <= 1e-9 * tau + 1e-15) {
                ++tally.skipped_ties;
                continue;
              }
              if (is_kept != (p >= tau) && reported++ < 10)
                ADD_FAILURE() << name << " block (" << R << ", " << C << ") b=" << b << " h=" << h
                              << ": p=" << p << " tau=" << tau << " expected "
                              << (p >= tau ? "kept" : "dropped") << ", got "
                              << (is_kept ? "kept" : "dropped");
            }
          };
          check_group(near, params.tau_near, "near", tally.near_kept, tally.near_dropped);
          check_group(far, params.tau_far, "far", tally.far_kept, tally.far_dropped);
        }
      }
  EXPECT_EQ(reported, 0) << "ranking / threshold violations (first 10 shown)";
}

bool same_layout(const dr::BlockLayout& a, const dr::BlockLayout& b) {
  return a.batch == b.batch && a.heads == b.heads && a.tokens == b.tokens && a.block_size == b.block_size &&
         a.blocks == b.blocks && a.row_offsets == b.row_offsets && a.col_indices == b.col_indices;
}

// Forced blocks of the prior for every (batch, head).
std::vector<std::vector<std::int32_t>> forced_rows(const dr::RadialPrior& prior, std::int64_t batch,
                                                   std::int64_t heads) {
  std::vector<std::vector<std::int32_t>> rows;
  for (std::int64_t bh = 0; bh < batch * heads; ++bh)
    for (std::int64_t R = 0; R < prior.blocks; ++R) {
      rows.emplace_back();
      for (std::int64_t e = prior.row_offsets[R]; e < prior.row_offsets[R + 1]; ++e)
        if (prior.kinds[e] == dr::BlockKind::forced) rows.back().push_back(prior.col_indices[e]);
    }
  return rows;
}

// A geometry with many near and far candidates.
dr::VideoGeometry candidate_rich_geometry() {
  dr::VideoGeometry g;
  g.frames = 12;
  g.height = 9;
  g.width = 14;  // 126 tokens per frame
  g.block_size = 32;
  g.heads = 2;
  g.batch = 2;
  g.head_dim = 16;
  return g;
}

dr::RadialPriorParams candidate_rich_params() {
  dr::RadialPriorParams p;
  p.first_frame_sink = false;
  p.theta_m = 0.1;
  p.theta_c = 0.05;
  p.gamma = 2.0;
  p.lambda = 0.5;
  return p;
}

const std::vector<double> kDyadicRatios{0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.9375, 1.0};

}  // namespace

TEST(Select, ValidateNamesTheBadField) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto with = [](auto change) {
    dr::SelectionParams p;
    change(p);
    return p;
  };
  EXPECT_NO_THROW(dr::validate(dr::SelectionParams{}));
  EXPECT_NO_THROW(dr::validate(with([](dr::SelectionParams& p) {
    p.r_near = 0.0;
    p.r_far = 1.0;
    p.tau_near = 1.0;
    p.tau_far = 0.0;
  })));
  EXPECT_DR_ERROR(dr::validate(with([](dr::SelectionParams& p) { p.r_near = -0.1; })), "r_near");
  EXPECT_DR_ERROR(dr::validate(with([](dr::SelectionParams& p) { p.r_near = 1.01; })), "r_near");
  EXPECT_DR_ERROR(dr::validate(with([nan](dr::SelectionParams& p) { p.r_near = nan; })), "r_near");
  EXPECT_DR_ERROR(dr::validate(with([](dr::SelectionParams& p) { p.r_far = -1e-9; })), "r_far");
  EXPECT_DR_ERROR(dr::validate(with([](dr::SelectionParams& p) { p.r_far = 2.0; })), "r_far");
  EXPECT_DR_ERROR(dr::validate(with([nan](dr::SelectionParams& p) { p.r_far = nan; })), "r_far");
  EXPECT_DR_ERROR(dr::validate(with([](dr::SelectionParams& p) { p.tau_near = -0.5; })), "tau_near");
  EXPECT_DR_ERROR(dr::validate(with([](dr::SelectionParams& p) { p.tau_near = 1.01; })), "tau_near");
  EXPECT_DR_ERROR(dr::validate(with([nan](dr::SelectionParams& p) { p.tau_near = nan; })), "tau_near");
  EXPECT_DR_ERROR(dr::validate(with([](dr::SelectionParams& p) { p.tau_far = -0.5; })), "tau_far");
  EXPECT_DR_ERROR(dr::validate(with([](dr::SelectionParams& p) { p.tau_far = 1.5; })), "tau_far");
  EXPECT_DR_ERROR(dr::validate(with([nan](dr::SelectionParams& p) { p.tau_far = nan; })), "tau_far");
}

TEST(Select, ModeNames) {
  EXPECT_EQ(dr::to_string(dr::SelectionMode::static_ratio), "static-ratio");
  EXPECT_EQ(dr::to_string(dr::SelectionMode::dynamic_threshold), "dynamic-threshold");
  EXPECT_EQ(dr::parse_selection_mode("static-ratio"), dr::SelectionMode::static_ratio);
  EXPECT_EQ(dr::parse_selection_mode("dynamic-threshold"), dr::SelectionMode::dynamic_threshold);
  EXPECT_DR_ERROR(dr::parse_selection_mode("fastest"), "mode");
  EXPECT_DR_ERROR(dr::parse_selection_mode("static_ratio", "lut.rows[1].mode"), "mode");
}

namespace {

dr::VideoGeometry short_last_block_geometry() {
  dr::VideoGeometry g;
  g.frames = 1;
  g.height = 3;
  g.width = 23;  // 69 tokens: blocks of 32, 32 and 5
  g.block_size = 32;
  g.batch = 2;
  g.heads = 3;
  g.head_dim = 5;
  return g;
}

}  // namespace

TEST(Select, PoolBlocksIsTheBlockMeanWithShortLastBlock) {
  const dr::VideoGeometry g = short_last_block_geometry();
  const dr::Shape shape = dr_test::make_shape(2, 69, 3, 5);
  dr_test::Rng rng(17);
  dr::HostTensor q = dr_test::random_tensor(rng, shape);
  dr::HostTensor k = dr_test::random_tensor(rng, shape, 3.0);
  const dr::PooledBlocks pooled = dr::pool_blocks(q.view(), k.view(), g);
  ASSERT_EQ(pooled.batch, 2);
  ASSERT_EQ(pooled.heads, 3);
  ASSERT_EQ(pooled.blocks, 3);
  ASSERT_EQ(pooled.head_dim, 5);
  ASSERT_EQ(pooled.q.size(), 2u * 3 * 3 * 5);
  ASSERT_EQ(pooled.k.size(), 2u * 3 * 3 * 5);
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t h = 0; h < 3; ++h)
      for (std::int64_t blk = 0; blk < 3; ++blk)
        for (std::int64_t d = 0; d < 5; ++d) {
          const std::int64_t t0 = blk * 32, t1 = std::min<std::int64_t>(69, t0 + 32);
          double mq = 0.0, mk = 0.0;
          for (std::int64_t t = t0; t < t1; ++t) {
            mq += q.get(q.index(b, t, h, d));
            mk += k.get(k.index(b, t, h, d));
          }
          mq /= static_cast<double>(t1 - t0);
          mk /= static_cast<double>(t1 - t0);
          EXPECT_NEAR(pooled.q[pooled_index(pooled, b, h, blk, d)], mq, 1e-5) << b << h << blk << d;
          EXPECT_NEAR(pooled.k[pooled_index(pooled, b, h, blk, d)], mk, 3e-5) << b << h << blk << d;
          // Bit-exact: a float sum in ascending token order times 1.0f / block tokens.
          float sq = 0.0f, sk = 0.0f;
          for (std::int64_t t = t0; t < t1; ++t) {
            sq += q.get(q.index(b, t, h, d));
            sk += k.get(k.index(b, t, h, d));
          }
          const float inv = 1.0f / static_cast<float>(t1 - t0);
          EXPECT_EQ(pooled.q[pooled_index(pooled, b, h, blk, d)], sq * inv) << b << h << blk << d;
          EXPECT_EQ(pooled.k[pooled_index(pooled, b, h, blk, d)], sk * inv) << b << h << blk << d;
        }
  // A constant tensor pools to the constant, also in the 5-token block.
  dr_test::fill(q, 2.5f);
  const dr::PooledBlocks constant = dr::pool_blocks(q.view(), k.view(), g);
  for (float x : constant.q) EXPECT_FLOAT_EQ(x, 2.5f);
}

TEST(Select, PoolBlocksReadsHalfPrecision) {
  dr::VideoGeometry g;
  g.frames = 2;
  g.height = 5;
  g.width = 7;  // 70 tokens, block 64: 64 + 6
  g.block_size = 64;
  g.heads = 2;
  g.head_dim = 8;
  dr_test::Rng rng(4);
  const dr::Shape shape = dr_test::make_shape(1, 70, 2, 8);
  const dr::HostTensor q32 = dr_test::random_tensor(rng, shape);
  const dr::HostTensor k32 = dr_test::random_tensor(rng, shape);
  for (dr::DType dt : {dr::DType::f16, dr::DType::bf16}) {
    const dr::HostTensor q = dr_test::convert(q32, dt), k = dr_test::convert(k32, dt);
    // The f32 copy of the rounded values pools to the same means.
    const dr::HostTensor qr = dr_test::convert(q, dr::DType::f32), kr = dr_test::convert(k, dr::DType::f32);
    const auto a = dr::pool_blocks(q.view(), k.view(), g);
    const auto b = dr::pool_blocks(qr.view(), kr.view(), g);
    ASSERT_EQ(a.q.size(), b.q.size());
    EXPECT_EQ(a.q, b.q) << dr::to_string(dt);
    EXPECT_EQ(a.k, b.k) << dr::to_string(dt);
  }
}

TEST(Select, BlockScoreFollowsItsFixedOrder) {
  dr_test::Rng rng(12);
  for (std::int64_t D : {1, 3, 7, 8, 9, 16, 63, 64, 80, 128, 131}) {
    std::vector<float> q(static_cast<std::size_t>(D)), k(q.size());
    for (int rep = 0; rep < 20; ++rep) {
      // Wide magnitudes make the summation order visible in the low bits.
      for (auto& x : q) x = static_cast<float>(rng.normal() * std::exp(rng.uniform(-8.0, 8.0)));
      for (auto& x : k) x = static_cast<float>(rng.normal() * std::exp(rng.uniform(-8.0, 8.0)));
      const double scale = rep % 2 ? 0.37 : 1.0 / std::sqrt(static_cast<double>(D));
      const double got = dr::block_score(q.data(), k.data(), D, scale);
      EXPECT_EQ(got, lane_score(q.data(), k.data(), D, scale)) << "head_dim " << D;
      double dot = 0.0, magnitude = 0.0;
      for (std::int64_t i = 0; i < D; ++i) {
        dot += static_cast<double>(q[i]) * k[i];
        magnitude += std::fabs(static_cast<double>(q[i]) * k[i]);
      }
      EXPECT_NEAR(got, dot * scale, 1e-13 * magnitude * scale) << "head_dim " << D;
    }
  }
}

namespace {

// 2 frames of 4 x 9 (72 tokens, block 32: 3 blocks), head_dim 4.
dr::VideoGeometry pooling_geometry(std::int64_t batch, std::int64_t heads) {
  dr::VideoGeometry g;
  g.frames = 2;
  g.height = 4;
  g.width = 9;
  g.block_size = 32;
  g.batch = batch;
  g.heads = heads;
  g.head_dim = 4;
  return g;
}

}  // namespace

TEST(Select, PoolBlocksRejectsNonFiniteNamingTheTensor) {
  const dr::VideoGeometry g = pooling_geometry(1, 2);
  const dr::Shape shape = dr_test::make_shape(1, 72, 2, 4);
  dr_test::Rng rng(2);
  const dr::HostTensor q0 = dr_test::random_tensor(rng, shape);
  const dr::HostTensor k0 = dr_test::random_tensor(rng, shape);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (float bad : {nan, inf, -inf}) {
    for (std::int64_t where : {std::int64_t{0}, std::int64_t{301}, shape.elements() - 1}) {
      dr::HostTensor q = q0, k = k0;
      q.set(where, bad);
      EXPECT_DR_ERROR(dr::pool_blocks(q.view(), k.view(), g), "q");
      q = q0;
      k.set(where, bad);
      EXPECT_DR_ERROR(dr::pool_blocks(q.view(), k.view(), g), "k");
    }
  }
  // Also in half precision.
  dr::HostTensor qh = dr_test::convert(q0, dr::DType::f16), kh = dr_test::convert(k0, dr::DType::f16);
  kh.set(17, inf);
  EXPECT_DR_ERROR(dr::pool_blocks(qh.view(), kh.view(), g), "k");
}

// The error names the element's [batch, token, head, dim] (the tensor is [batch, tokens, heads, head_dim]).
TEST(Select, PoolBlocksNonFiniteErrorNamesTheElement) {
  const dr::VideoGeometry g = pooling_geometry(2, 3);
  const dr::Shape shape = dr_test::make_shape(2, 72, 3, 4);
  dr_test::Rng rng(5);
  const dr::HostTensor q0 = dr_test::random_tensor(rng, shape);
  const dr::HostTensor k0 = dr_test::random_tensor(rng, shape);
  dr::HostTensor k = k0;
  k.set(k.index(1, 37, 2, 1), std::numeric_limits<float>::quiet_NaN());
  try {
    dr::pool_blocks(q0.view(), k.view(), g);
    ADD_FAILURE() << "pool_blocks accepted a NaN";
  } catch (const dr::Error& e) {
    EXPECT_EQ(e.field(), "k");
    EXPECT_NE(std::string(e.what()).find("NaN at [batch 1, token 37, head 2, dim 1]"), std::string::npos) << e.what();
  }
}

TEST(Select, PoolBlocksRejectsMismatchedShapes) {
  const dr::VideoGeometry g = pooling_geometry(1, 2);
  dr_test::Rng rng(2);
  const dr::HostTensor q = dr_test::random_tensor(rng, dr_test::make_shape(1, 72, 2, 4));
  const dr::HostTensor k = dr_test::random_tensor(rng, dr_test::make_shape(1, 72, 2, 4));
  const dr::HostTensor short_t = dr_test::random_tensor(rng, dr_test::make_shape(1, 71, 2, 4));
  const dr::HostTensor other_dim = dr_test::random_tensor(rng, dr_test::make_shape(1, 72, 2, 8));
  const dr::HostTensor other_heads = dr_test::random_tensor(rng, dr_test::make_shape(1, 72, 3, 4));
  const dr::HostTensor other_batch = dr_test::random_tensor(rng, dr_test::make_shape(2, 72, 2, 4));
  EXPECT_NO_THROW(dr::pool_blocks(q.view(), k.view(), g));
  EXPECT_DR_ERROR(dr::pool_blocks(short_t.view(), short_t.view(), g), "q", "k", "tokens", "geometry");
  EXPECT_DR_ERROR(dr::pool_blocks(q.view(), short_t.view(), g), "k");
  EXPECT_DR_ERROR(dr::pool_blocks(q.view(), other_dim.view(), g), "k");
  EXPECT_DR_ERROR(dr::pool_blocks(q.view(), other_heads.view(), g), "k");
  EXPECT_DR_ERROR(dr::pool_blocks(q.view(), other_batch.view(), g), "k");
}

TEST(Select, StaticRatioKeepsTheTopCeilShareOnRandomGeometries) {
  dr_test::Rng rng(31);
  SelectionTally tally;
  for (int i = 0; i < 120; ++i) {
    const dr::VideoGeometry g = dr_test::random_geometry(rng, 3000);
    const dr::RadialPriorParams pp = dr_test::random_prior_params(rng);
    const dr::RadialPrior prior = dr::build_radial_prior(g, pp);
    const dr::PooledBlocks pooled =
        random_pooled(rng, rng.integer(1, 2), rng.integer(1, 3), prior.blocks, rng.integer(1, 24), 1.5);
    dr::SelectionParams sp;
    sp.mode = dr::SelectionMode::static_ratio;
    sp.r_near = rng.pick(kDyadicRatios);
    sp.r_far = rng.pick(kDyadicRatios);
    SCOPED_TRACE(describe(g) + " " + describe(pp) + " r_near=" + std::to_string(sp.r_near) +
                 " r_far=" + std::to_string(sp.r_far));
    const dr::BlockLayout layout = dr::select_blocks(prior, pooled, sp);
    check_selection(prior, pooled, sp, layout, tally);
    if (HasFailure()) return;
    // Deterministic: the same inputs give the same layout.
    EXPECT_TRUE(same_layout(layout, dr::select_blocks(prior, pooled, sp)));
  }
  EXPECT_GT(tally.near_kept, 0);
  EXPECT_GT(tally.near_dropped, 0);
  EXPECT_GT(tally.far_kept, 0);
  EXPECT_GT(tally.far_dropped, 0);
}

TEST(Select, DynamicThresholdKeepsMassAboveTauOnRandomGeometries) {
  dr_test::Rng rng(32);
  SelectionTally tally;
  for (int i = 0; i < 120; ++i) {
    const dr::VideoGeometry g = dr_test::random_geometry(rng, 3000);
    const dr::RadialPriorParams pp = dr_test::random_prior_params(rng);
    const dr::RadialPrior prior = dr::build_radial_prior(g, pp);
    const dr::PooledBlocks pooled =
        random_pooled(rng, rng.integer(1, 2), rng.integer(1, 3), prior.blocks, rng.integer(1, 24), 1.5);
    dr::SelectionParams sp;
    sp.mode = dr::SelectionMode::dynamic_threshold;
    sp.tau_near = rng.log_uniform(1e-4, 0.3);
    sp.tau_far = rng.log_uniform(1e-4, 0.3);
    SCOPED_TRACE(describe(g) + " " + describe(pp) + " tau_near=" + std::to_string(sp.tau_near) +
                 " tau_far=" + std::to_string(sp.tau_far));
    const dr::BlockLayout layout = dr::select_blocks(prior, pooled, sp);
    check_selection(prior, pooled, sp, layout, tally);
    if (HasFailure()) return;
    EXPECT_TRUE(same_layout(layout, dr::select_blocks(prior, pooled, sp)));
  }
  EXPECT_GT(tally.near_kept, 0);
  EXPECT_GT(tally.near_dropped, 0);
  EXPECT_GT(tally.far_kept, 0);
  EXPECT_GT(tally.far_dropped, 0);
}

TEST(Select, ExactTiesGoToTheLowerKeyBlock) {
  const dr::VideoGeometry g = candidate_rich_geometry();
  const dr::RadialPrior prior = dr::build_radial_prior(g, candidate_rich_params());
  ASSERT_GT(prior.count(dr::BlockKind::near), 0);
  ASSERT_GT(prior.count(dr::BlockKind::far), 0);
  dr_test::Rng rng(8);
  dr::PooledBlocks pooled = random_pooled(rng, 1, 1, prior.blocks, 16, 1.0);
  // Every key block pools to the same vector, so all scores of a row are bit-identical.
  for (std::int64_t C = 1; C < prior.blocks; ++C)
    for (std::int64_t d = 0; d < 16; ++d) pooled.k[pooled_index(pooled, 0, 0, C, d)] = pooled.k[pooled_index(pooled, 0, 0, 0, d)];
  for (double r : {0.25, 0.5, 0.75}) {
    dr::SelectionParams sp;
    sp.r_near = r;
    sp.r_far = r;
    const dr::BlockLayout layout = dr::select_blocks(prior, pooled, sp);
    for (std::int64_t R = 0; R < prior.blocks; ++R) {
      std::vector<std::int32_t> near, far, want;
      for (std::int64_t e = prior.row_offsets[R]; e < prior.row_offsets[R + 1]; ++e) {
        if (prior.kinds[e] == dr::BlockKind::forced) want.push_back(prior.col_indices[e]);
        if (prior.kinds[e] == dr::BlockKind::near) near.push_back(prior.col_indices[e]);
        if (prior.kinds[e] == dr::BlockKind::far) far.push_back(prior.col_indices[e]);
      }
      const auto take = [&](const std::vector<std::int32_t>& group) {
        const std::size_t n = static_cast<std::size_t>(std::ceil(r * static_cast<double>(group.size())));
        want.insert(want.end(), group.begin(), group.begin() + static_cast<std::ptrdiff_t>(n));
      };
      take(near);
      take(far);
      std::sort(want.begin(), want.end());
      EXPECT_EQ(dr_test::row_cols(layout, R), want) << "row " << R << " r=" << r;
    }
  }
}

namespace {

// candidate_rich_geometry() with 11 frames (1386 tokens, block 32): its last block holds 10 tokens.
dr::RadialPrior prior_with_short_last_block() {
  dr::VideoGeometry g = candidate_rich_geometry();
  g.frames = 11;
  return dr::build_radial_prior(g, candidate_rich_params());
}

// Block means that give every block pair of the prior the same score (batch 1, one head).
dr::PooledBlocks equal_scores(const dr::RadialPrior& prior) {
  dr::PooledBlocks pooled;
  pooled.batch = 1;
  pooled.heads = 1;
  pooled.blocks = prior.blocks;
  pooled.head_dim = 4;
  pooled.q.assign(static_cast<std::size_t>(prior.blocks * 4), 0.5f);
  pooled.k.assign(static_cast<std::size_t>(prior.blocks * 4), -0.25f);
  return pooled;
}

// The tokens of row R's blocks in the prior (forced and candidate).
double row_tokens(const dr::RadialPrior& prior, std::int64_t R) {
  double total = 0.0;
  for (std::int64_t e = prior.row_offsets[R]; e < prior.row_offsets[R + 1]; ++e)
    total += static_cast<double>(block_tokens(prior, prior.col_indices[e]));
  return total;
}

// Row R of the prior without the last block unless it is forced.
std::vector<std::int32_t> row_without_last_candidate(const dr::RadialPrior& prior, std::int64_t R) {
  std::vector<std::int32_t> want;
  for (std::int64_t e = prior.row_offsets[R]; e < prior.row_offsets[R + 1]; ++e)
    if (prior.kinds[e] == dr::BlockKind::forced || prior.col_indices[e] != prior.blocks - 1) want.push_back(prior.col_indices[e]);
  return want;
}

}  // namespace

TEST(Select, DynamicThresholdWeighsBlocksByTheirTokens) {
  // All scores equal: p(C) = |C| / sum |C'|, so with tau between the short block's share and a full
  // block's share exactly the full candidate blocks are kept.
  const dr::RadialPrior prior = prior_with_short_last_block();
  const std::int64_t last = prior.blocks - 1;
  ASSERT_EQ(block_tokens(prior, last), 10);
  const dr::PooledBlocks pooled = equal_scores(prior);
  bool short_candidate = false;
  for (std::int64_t R = 0; R < prior.blocks; ++R) {
    bool has_short = false;
    for (std::int64_t e = prior.row_offsets[R]; e < prior.row_offsets[R + 1]; ++e)
      has_short |= prior.col_indices[e] == last && prior.kinds[e] != dr::BlockKind::forced;
    if (!has_short) continue;
    short_candidate = true;
    dr::SelectionParams sp;
    sp.mode = dr::SelectionMode::dynamic_threshold;
    sp.tau_near = sp.tau_far = 0.5 * (10.0 + 32.0) / row_tokens(prior, R);
    const dr::BlockLayout layout = dr::select_blocks(prior, pooled, sp);
    EXPECT_EQ(dr_test::row_cols(layout, R), row_without_last_candidate(prior, R)) << "row " << R;
  }
  EXPECT_TRUE(short_candidate) << "geometry has no row where the short block is a candidate";
}

TEST(Select, DynamicThresholdKeepsAMassEqualToTau) {
  // All scores equal: a full block's mass is exactly 32 / (the row's tokens), and tau set to that
  // value keeps it (p >= tau); the short last block (10 tokens) falls below and is dropped.
  const dr::RadialPrior prior = prior_with_short_last_block();
  const std::int64_t last = prior.blocks - 1;
  ASSERT_EQ(block_tokens(prior, last), 10);
  const dr::PooledBlocks pooled = equal_scores(prior);
  std::int64_t full_candidates = 0;
  for (std::int64_t R = 0; R < prior.blocks; ++R) {
    dr::SelectionParams sp;
    sp.mode = dr::SelectionMode::dynamic_threshold;
    sp.tau_near = sp.tau_far = 32.0 / row_tokens(prior, R);
    const dr::BlockLayout layout = dr::select_blocks(prior, pooled, sp);
    EXPECT_EQ(dr_test::row_cols(layout, R), row_without_last_candidate(prior, R)) << "row " << R << " tau=" << sp.tau_near;
    for (std::int64_t e = prior.row_offsets[R]; e < prior.row_offsets[R + 1]; ++e)
      full_candidates += prior.kinds[e] != dr::BlockKind::forced && prior.col_indices[e] != last;
  }
  EXPECT_GT(full_candidates, 0) << "geometry has no full candidate block";
}

TEST(Select, FullRatioOrZeroThresholdIsTheWholePrior) {
  dr_test::Rng rng(41);
  for (int i = 0; i < 40; ++i) {
    const dr::VideoGeometry g = dr_test::random_geometry(rng, 3000);
    const dr::RadialPrior prior = dr::build_radial_prior(g, dr_test::random_prior_params(rng));
    const std::int64_t batch = rng.integer(1, 2), heads = rng.integer(1, 3);
    const dr::PooledBlocks pooled = random_pooled(rng, batch, heads, prior.blocks, 8, 1.0);
    const dr::BlockLayout whole = dr::layout_from_prior(prior, batch, heads);
    SCOPED_TRACE(describe(g));
    // layout_from_prior repeats the prior for every (batch, head).
    ASSERT_EQ(whole.rows(), batch * heads * prior.blocks);
    for (std::int64_t bh = 0; bh < batch * heads; ++bh)
      for (std::int64_t R = 0; R < prior.blocks; ++R)
        ASSERT_EQ(dr_test::row_cols(whole, bh * prior.blocks + R),
                  std::vector<std::int32_t>(prior.col_indices.begin() + prior.row_offsets[R],
                                            prior.col_indices.begin() + prior.row_offsets[R + 1]));
    dr::SelectionParams all_static;
    all_static.r_near = all_static.r_far = 1.0;
    EXPECT_TRUE(same_layout(dr::select_blocks(prior, pooled, all_static), whole));
    dr::SelectionParams all_dynamic;
    all_dynamic.mode = dr::SelectionMode::dynamic_threshold;
    all_dynamic.tau_near = all_dynamic.tau_far = 0.0;
    EXPECT_TRUE(same_layout(dr::select_blocks(prior, pooled, all_dynamic), whole));
  }
}

TEST(Select, ZeroRatioOrFullThresholdKeepsOnlyForcedBlocks) {
  dr_test::Rng rng(42);
  for (int i = 0; i < 40; ++i) {
    const dr::VideoGeometry g = dr_test::random_geometry(rng, 3000);
    const dr::RadialPrior prior = dr::build_radial_prior(g, dr_test::random_prior_params(rng));
    const std::int64_t batch = rng.integer(1, 2), heads = rng.integer(1, 3);
    const dr::PooledBlocks pooled = random_pooled(rng, batch, heads, prior.blocks, 8, 1.0);
    const dr::BlockLayout forced = dr_test::make_layout(batch, heads, dr::total_tokens(g), g.block_size,
                                                        forced_rows(prior, batch, heads));
    SCOPED_TRACE(describe(g));
    dr::SelectionParams none_static;
    none_static.r_near = none_static.r_far = 0.0;
    EXPECT_TRUE(same_layout(dr::select_blocks(prior, pooled, none_static), forced));
    dr::SelectionParams none_dynamic;
    none_dynamic.mode = dr::SelectionMode::dynamic_threshold;
    none_dynamic.tau_near = none_dynamic.tau_far = 1.0;
    EXPECT_TRUE(same_layout(dr::select_blocks(prior, pooled, none_dynamic), forced));
  }
}

TEST(Select, RowsFollowBatchHeadBlockOrder) {
  const dr::VideoGeometry g = candidate_rich_geometry();
  const dr::RadialPrior prior = dr::build_radial_prior(g, candidate_rich_params());
  dr_test::Rng rng(77);
  const std::int64_t batch = 2, heads = 3, D = 16;
  const dr::PooledBlocks pooled = random_pooled(rng, batch, heads, prior.blocks, D, 2.0);
  for (auto mode : {dr::SelectionMode::static_ratio, dr::SelectionMode::dynamic_threshold}) {
    dr::SelectionParams sp;
    sp.mode = mode;
    sp.r_near = 0.5;
    sp.r_far = 0.25;
    sp.tau_near = 0.01;
    sp.tau_far = 0.02;
    const dr::BlockLayout layout = dr::select_blocks(prior, pooled, sp);
    bool heads_differ = false;
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t h = 0; h < heads; ++h) {
        // The (b, h) slice selected alone gives exactly rows row(b, h, *).
        dr::PooledBlocks one;
        one.batch = 1;
        one.heads = 1;
        one.blocks = prior.blocks;
        one.head_dim = D;
        for (std::int64_t blk = 0; blk < prior.blocks; ++blk)
          for (std::int64_t d = 0; d < D; ++d) {
            one.q.push_back(pooled.q[pooled_index(pooled, b, h, blk, d)]);
            one.k.push_back(pooled.k[pooled_index(pooled, b, h, blk, d)]);
          }
        const dr::BlockLayout alone = dr::select_blocks(prior, one, sp);
        for (std::int64_t R = 0; R < prior.blocks; ++R) {
          ASSERT_EQ(dr_test::row_cols(layout, layout.row(b, h, R)), dr_test::row_cols(alone, R))
              << dr::to_string(mode) << " b=" << b << " h=" << h << " R=" << R;
          heads_differ |= dr_test::row_cols(layout, layout.row(b, h, R)) != dr_test::row_cols(layout, layout.row(0, 0, R));
        }
      }
    EXPECT_TRUE(heads_differ) << "content-dependent selection should differ between heads";
  }
}

TEST(Select, RejectsPooledBlocksThatDisagreeWithThePrior) {
  const dr::VideoGeometry g = candidate_rich_geometry();
  const dr::RadialPrior prior = dr::build_radial_prior(g, candidate_rich_params());
  dr_test::Rng rng(1);
  const dr::PooledBlocks wrong = random_pooled(rng, 1, 1, prior.blocks + 1, 8, 1.0);
  EXPECT_THROW(dr::select_blocks(prior, wrong, dr::SelectionParams{}), dr::Error);
  // q or k holding fewer values than batch x heads x blocks x head_dim.
  dr::PooledBlocks short_q = random_pooled(rng, 1, 1, prior.blocks, 8, 1.0);
  short_q.q.pop_back();
  EXPECT_DR_FIELD(dr::select_blocks(prior, short_q, dr::SelectionParams{}), "pooled.q");
  dr::PooledBlocks short_k = random_pooled(rng, 1, 1, prior.blocks, 8, 1.0);
  short_k.k.resize(short_k.k.size() / 2);
  EXPECT_DR_FIELD(dr::select_blocks(prior, short_k, dr::SelectionParams{}), "pooled.k");
  dr::SelectionParams bad;
  bad.r_near = 2.0;
  const dr::PooledBlocks ok = random_pooled(rng, 1, 1, prior.blocks, 8, 1.0);
  EXPECT_DR_ERROR(dr::select_blocks(prior, ok, bad), "r_near");
}

TEST(Select, SyntheticPipelineInvariants) {
  dr_test::Rng rng(5);
  SelectionTally tally;
  for (int i = 0; i < 12; ++i) {
    dr::VideoGeometry g = dr_test::random_geometry(rng, 2000);
    g.head_dim = 16;
    const dr::RadialPriorParams pp = dr_test::random_prior_params(rng);
    const dr::RadialPrior prior = dr::build_radial_prior(g, pp);
    dr::SyntheticOptions so;
    so.seed = static_cast<std::uint64_t>(i + 1);
    so.drift = rng.pick(std::vector<double>{0.02, 0.15, 0.4});
    const dr::SyntheticQkv qkv = dr::make_synthetic_qkv(g, so);
    const dr::PooledBlocks pooled = dr::pool_blocks(qkv.q.view(), qkv.k.view(), g);
    ASSERT_EQ(pooled.blocks, prior.blocks);
    ASSERT_EQ(pooled.batch, g.batch);
    ASSERT_EQ(pooled.heads, g.heads);
    SCOPED_TRACE(describe(g) + " " + describe(pp));
    for (auto mode : {dr::SelectionMode::static_ratio, dr::SelectionMode::dynamic_threshold}) {
      dr::SelectionParams sp;
      sp.mode = mode;
      sp.r_near = 0.5;
      sp.r_far = 0.25;
      const dr::BlockLayout layout = dr::select_blocks(prior, pooled, sp);
      check_selection(prior, pooled, sp, layout, tally);
      if (HasFailure()) return;
      EXPECT_TRUE(same_layout(layout, dr::select_blocks(prior, dr::pool_blocks(qkv.q.view(), qkv.k.view(), g), sp)));
    }
  }
}

// pool_blocks() with a PooledPrefix: the first prefix.blocks blocks are copied from the prefix, the
// rest pooled, so a prefix of pooling's own means changes nothing.
namespace {

std::size_t prefix_index(const dr::PooledBlocks& p, std::int64_t blocks, std::int64_t b, std::int64_t h,
                         std::int64_t blk, std::int64_t d) {
  return static_cast<std::size_t>(((b * p.heads + h) * blocks + blk) * p.head_dim + d);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Checks that `got` is `want` bit for bit, naming the first differing mean.
void expect_same_pooled(const dr::PooledBlocks& got, const dr::PooledBlocks& want, const std::string& what) {
  ASSERT_EQ(got.batch, want.batch) << what;
  ASSERT_EQ(got.heads, want.heads) << what;
  ASSERT_EQ(got.blocks, want.blocks) << what;
  ASSERT_EQ(got.head_dim, want.head_dim) << what;
  for (const auto& [g, w, name] : {std::make_tuple(&got.q, &want.q, "q"), std::make_tuple(&got.k, &want.k, "k")}) {
    ASSERT_EQ(g->size(), w->size()) << what << " " << name;
    if (same_bits(*g, *w)) continue;
    for (std::size_t i = 0; i < g->size(); ++i)
      if (std::memcmp(&(*g)[i], &(*w)[i], sizeof(float)) != 0) {
        const std::int64_t n = static_cast<std::int64_t>(i);
        ADD_FAILURE() << what << ": pooled " << name << "[b " << n / (want.head_dim * want.blocks * want.heads) << ", h "
                      << (n / (want.head_dim * want.blocks)) % want.heads << ", blk " << (n / want.head_dim) % want.blocks
                      << ", d " << n % want.head_dim << "] = " << (*g)[i] << ", expected " << (*w)[i];
        break;
      }
  }
}


}  // namespace

TEST(Select, PoolBlocksWithPoolingsOwnPrefixIsPoolBlocks) {
  dr_test::Rng rng(61);
  std::vector<std::pair<dr::VideoGeometry, dr::DType>> cases = {
      {short_last_block_geometry(), dr::DType::f32},
      {[] {
         dr::VideoGeometry g = candidate_rich_geometry();
         g.frames = 11;  // 1386 tokens, block 32: the last block holds 10 tokens
         return g;
       }(),
       dr::DType::f16},
  };
  for (int i = 0; i < 12; ++i) {
    const dr::DType dtypes[] = {dr::DType::f32, dr::DType::bf16, dr::DType::f16};
    cases.emplace_back(dr_test::random_geometry(rng, 3000), dtypes[i % 3]);
  }
  for (const auto& [g, dtype] : cases) {
    const dr::Shape shape = dr_test::make_shape(g.batch, dr::total_tokens(g), g.heads, g.head_dim);
    const dr::HostTensor q = dr_test::random_tensor(rng, shape, 1.0, dtype);
    const dr::HostTensor k = dr_test::random_tensor(rng, shape, 2.0, dtype);
    const dr::PooledBlocks full = dr::pool_blocks(q.view(), k.view(), g);
    const std::int64_t blocks = dr::num_blocks(g);
    ASSERT_EQ(full.blocks, blocks);
    std::vector<std::int64_t> counts = {0, 1, blocks / 2, blocks - 1, blocks};
    std::sort(counts.begin(), counts.end());
    counts.erase(std::unique(counts.begin(), counts.end()), counts.end());
    for (const std::int64_t P : counts) {
      const std::string what = describe(g) + " " + dr::to_string(dtype) + " prefix blocks " + std::to_string(P);
      const dr_test::PrefixArrays arrays = dr_test::prefix_of(full, P, g.block_size);
      expect_same_pooled(dr::pool_blocks(q.view(), k.view(), g, arrays.view()), full, what);
    }
    // No prefix: null pointers are allowed with zero blocks.
    expect_same_pooled(dr::pool_blocks(q.view(), k.view(), g, dr::PooledPrefix{}), full, describe(g) + " empty prefix");
    if (HasFailure()) return;
  }
}

TEST(Select, PoolBlocksAdoptsThePrefixValues) {
  const dr::VideoGeometry g = short_last_block_geometry();
  const dr::Shape shape = dr_test::make_shape(2, 69, 3, 5);
  dr_test::Rng rng(62);
  const dr::HostTensor q = dr_test::random_tensor(rng, shape), k = dr_test::random_tensor(rng, shape);
  const dr::PooledBlocks full = dr::pool_blocks(q.view(), k.view(), g);

  // Two means of a 2-block prefix changed: exactly those two change in the result.
  dr_test::PrefixArrays arrays = dr_test::prefix_of(full, 2, g.block_size);
  arrays.q[prefix_index(full, 2, 1, 2, 0, 3)] = 1234.5f;
  arrays.k[prefix_index(full, 2, 0, 1, 1, 0)] = -77.25f;
  dr::PooledBlocks want = full;
  want.q[pooled_index(full, 1, 2, 0, 3)] = 1234.5f;
  want.k[pooled_index(full, 0, 1, 1, 0)] = -77.25f;
  expect_same_pooled(dr::pool_blocks(q.view(), k.view(), g, arrays.view()), want, "edited prefix");

  // A prefix of every block from other tensors: the result is their pooling; q and k are not pooled.
  const dr::HostTensor q2 = dr_test::random_tensor(rng, shape, 3.0), k2 = dr_test::random_tensor(rng, shape, 0.5);
  const dr::PooledBlocks other = dr::pool_blocks(q2.view(), k2.view(), g);
  const dr_test::PrefixArrays all = dr_test::prefix_of(other, 3, g.block_size);
  expect_same_pooled(dr::pool_blocks(q.view(), k.view(), g, all.view()), other, "whole prefix of other tensors");

  // Other tensors' first block, then q and k's own blocks 1 and 2.
  const dr_test::PrefixArrays first = dr_test::prefix_of(other, 1, g.block_size);
  dr::PooledBlocks mixed = full;
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t h = 0; h < 3; ++h)
      for (std::int64_t d = 0; d < 5; ++d) {
        mixed.q[pooled_index(full, b, h, 0, d)] = other.q[pooled_index(other, b, h, 0, d)];
        mixed.k[pooled_index(full, b, h, 0, d)] = other.k[pooled_index(other, b, h, 0, d)];
      }
  expect_same_pooled(dr::pool_blocks(q.view(), k.view(), g, first.view()), mixed, "one block of other tensors");
}

TEST(Select, PoolBlocksPrefixErrorsNameTheField) {
  dr::VideoGeometry g;
  g.frames = 2;
  g.height = 4;
  g.width = 9;  // 72 tokens, block 32: 3 blocks
  g.block_size = 32;
  g.heads = 2;
  g.head_dim = 4;
  const dr::Shape shape = dr_test::make_shape(1, 72, 2, 4);
  dr_test::Rng rng(63);
  const dr::HostTensor q = dr_test::random_tensor(rng, shape), k = dr_test::random_tensor(rng, shape);
  const dr::PooledBlocks full = dr::pool_blocks(q.view(), k.view(), g);
  const dr_test::PrefixArrays all = dr_test::prefix_of(full, 3, g.block_size);
  EXPECT_NO_THROW(dr::pool_blocks(q.view(), k.view(), g, all.view()));
  for (const std::int64_t blocks : {std::int64_t{-1}, std::int64_t{4}, std::int64_t{100}}) {
    SCOPED_TRACE(blocks);
    EXPECT_DR_FIELD(dr::pool_blocks(q.view(), k.view(), g, dr::PooledPrefix{all.q.data(), all.k.data(), blocks, 32}),
                    "pooled_blocks");
  }
  const dr_test::PrefixArrays two = dr_test::prefix_of(full, 2, g.block_size);
  EXPECT_DR_FIELD(dr::pool_blocks(q.view(), k.view(), g, dr::PooledPrefix{nullptr, two.k.data(), 2, 32}), "pooled_q");
  EXPECT_DR_FIELD(dr::pool_blocks(q.view(), k.view(), g, dr::PooledPrefix{two.q.data(), nullptr, 2, 32}), "pooled_k");
  EXPECT_DR_FIELD(dr::pool_blocks(q.view(), k.view(), g, dr::PooledPrefix{nullptr, nullptr, 1, 32}), "pooled_q");
  // Means over other blocks than the geometry's (or an unstated size) would be read as its blocks.
  for (const int block : {0, 16, 64}) {
    SCOPED_TRACE(block);
    EXPECT_DR_FIELD(dr::pool_blocks(q.view(), k.view(), g, dr::PooledPrefix{two.q.data(), two.k.data(), 2, block}),
                    "pool_block");
  }
  EXPECT_NO_THROW(dr::pool_blocks(q.view(), k.view(), g, dr::PooledPrefix{nullptr, nullptr, 0, 16}));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (const float bad : {nan, inf, -inf}) {
    for (const std::size_t where : {std::size_t{0}, two.q.size() - 1}) {
      SCOPED_TRACE(std::to_string(bad) + " at " + std::to_string(where));
      dr_test::PrefixArrays broken = two;
      broken.k[where] = bad;
      EXPECT_DR_FIELD(dr::pool_blocks(q.view(), k.view(), g, broken.view()), "pooled_k");
      broken = two;
      broken.q[where] = bad;
      EXPECT_DR_FIELD(dr::pool_blocks(q.view(), k.view(), g, broken.view()), "pooled_q");
    }
  }
}

TEST(SelectionParams, OutOfRangeValuesAreShownAsGiven) {
  // Six-decimal printing showed 1.0000001 as "1.000000" and -1e-300 as "-0.000000".
  dr::SelectionParams p;
  p.r_near = 1.0000001;
  EXPECT_EQ(dr_test::error_message([&] { dr::validate(p); }), "selection.r_near: 1.0000001: allowed range [0, 1]");
  p = dr::SelectionParams{};
  p.tau_far = -1e-300;
  EXPECT_EQ(dr_test::error_message([&] { dr::validate(p); }), "selection.tau_far: -1e-300: allowed range [0, 1]");
}
