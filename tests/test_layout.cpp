// Tests for layout.h: validation, the full layout, statistics on a hand-made layout and the size
// of a full-scale layout.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <vector>

#include "dynamicrad/geometry.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/presets.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"
#include "test_support.h"

namespace dr = dynamicrad;

namespace {

// batch 1, heads 2, 80 tokens of block 32: 3 blocks of 32, 32 and 16 tokens.
//   head 0: {0} {0,1} {0,1,2}     head 1: {0,1,2} {1} {2}
dr::BlockLayout hand_layout() {
  return dr_test::make_layout(1, 2, 80, 32, {{0}, {0, 1}, {0, 1, 2}, {0, 1, 2}, {1}, {2}});
}

// The geometry of hand_layout(): 5 frames of 4 x 4 tokens, raster; blocks hold frames {0,1},
// {2,3} and {4}.
dr::VideoGeometry hand_geometry() {
  dr::VideoGeometry g;
  g.heads = 2;
  g.frames = 5;
  g.height = 4;
  g.width = 4;
  g.block_size = 32;
  return g;
}

}  // namespace

TEST(Layout, ValidateAcceptsGoodLayouts) {
  EXPECT_NO_THROW(dr::validate(hand_layout()));
  EXPECT_NO_THROW(dr::validate(dr::full_layout(2, 3, 1000, 128)));
  // Empty rows are allowed.
  EXPECT_NO_THROW(dr::validate(dr_test::make_layout(1, 1, 64, 32, {{}, {1}})));
}

TEST(Layout, ValidateRejectsBadLayouts) {
  {
    auto l = hand_layout();
    l.row_offsets.pop_back();
    EXPECT_DR_ERROR(dr::validate(l), "row_offsets");
  }
  {
    auto l = hand_layout();
    l.row_offsets.push_back(l.row_offsets.back());
    EXPECT_DR_ERROR(dr::validate(l), "row_offsets");
  }
  {
    auto l = hand_layout();
    l.row_offsets[0] = 1;
    EXPECT_THROW(dr::validate(l), dr::Error);
  }
  {
    auto l = hand_layout();
    l.col_indices.pop_back();  // last offset no longer matches
    EXPECT_THROW(dr::validate(l), dr::Error);
  }
  {
    auto l = hand_layout();
    std::swap(l.row_offsets[2], l.row_offsets[3]);  // decreasing offsets
    EXPECT_THROW(dr::validate(l), dr::Error);
  }
  {
    auto l = hand_layout();
    l.col_indices[3] = 3;  // == blocks
    EXPECT_DR_ERROR(dr::validate(l), "col_indices", "column", "columns");
  }
  {
    // A row's last column == blocks while the row stays ascending: only the range check sees it
    // (hand_layout's row 2 becomes {0, 1, 3}).
    auto l = hand_layout();
    l.col_indices[5] = 3;
    EXPECT_DR_ERROR(dr::validate(l), "col_indices");
  }
  {
    // Offsets 0, 2, 1, 3 over columns 0, 1, 2: rows {0, 1}, [2, 1) and {1, 2} are ascending and
    // in range, so only the decrease at row 1 is wrong.
    auto l = dr_test::make_layout(1, 1, 96, 32, {{0}, {1}, {2}});
    l.col_indices = {0, 1, 2};
    l.row_offsets = {0, 2, 1, 3};
    EXPECT_DR_ERROR(dr::validate(l), "row_offsets");
  }
  {
    auto l = hand_layout();
    l.col_indices[0] = -1;
    EXPECT_DR_ERROR(dr::validate(l), "col_indices", "column", "columns");
  }
  {
    auto l = dr_test::make_layout(1, 1, 96, 32, {{0}, {2, 1}, {2}});
    EXPECT_DR_ERROR(dr::validate(l), "col_indices", "row", "rows", "ascending");
  }
  {
    auto l = dr_test::make_layout(1, 1, 96, 32, {{0}, {1, 1}, {2}});
    EXPECT_DR_ERROR(dr::validate(l), "col_indices", "row", "rows", "ascending");
  }
  {
    auto l = hand_layout();
    l.blocks = 4;  // != ceil(80 / 32)
    EXPECT_THROW(dr::validate(l), dr::Error);
  }
  {
    auto l = hand_layout();
    l.block_size = 48;
    EXPECT_DR_ERROR(dr::validate(l), "block_size");
  }
  {
    auto l = hand_layout();
    l.heads = 3;  // rows no longer match
    EXPECT_THROW(dr::validate(l), dr::Error);
  }
}

TEST(Layout, FullLayout) {
  const dr::BlockLayout l = dr::full_layout(2, 3, 100, 32);
  EXPECT_EQ(l.batch, 2);
  EXPECT_EQ(l.heads, 3);
  EXPECT_EQ(l.tokens, 100);
  EXPECT_EQ(l.block_size, 32);
  EXPECT_EQ(l.blocks, 4);
  ASSERT_EQ(l.rows(), 24);
  ASSERT_EQ(static_cast<std::int64_t>(l.row_offsets.size()), 25);
  for (std::int64_t r = 0; r < l.rows(); ++r)
    EXPECT_EQ(dr_test::row_cols(l, r), (std::vector<std::int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(l.kept(), 96);
  EXPECT_EQ(l.bytes(), 25 * 8 + 96 * 4);
  const dr::LayoutStats s = dr::layout_stats(l, nullptr);
  EXPECT_DOUBLE_EQ(s.density, 1.0);
  EXPECT_DOUBLE_EQ(s.sparsity, 0.0);
  EXPECT_DOUBLE_EQ(s.token_density, 1.0);
  ASSERT_EQ(s.head_sparsity.size(), 3u);
  for (double hs : s.head_sparsity) EXPECT_DOUBLE_EQ(hs, 0.0);
  EXPECT_EQ(s.min_row_blocks, 4);
  EXPECT_EQ(s.bytes, l.bytes());
  EXPECT_TRUE(s.by_distance.empty());
}

TEST(Layout, StatsOnHandMadeLayout) {
  const dr::BlockLayout l = hand_layout();
  EXPECT_EQ(l.kept(), 11);
  EXPECT_EQ(l.rows(), 6);
  EXPECT_EQ(l.row(0, 1, 2), 5);
  EXPECT_EQ(l.bytes(), 7 * 8 + 11 * 4);
  const dr::LayoutStats s = dr::layout_stats(l, nullptr);
  EXPECT_NEAR(s.density, 11.0 / 18.0, 1e-12);
  EXPECT_NEAR(s.sparsity, 7.0 / 18.0, 1e-12);
  // Kept token pairs: head 0 4352, head 1 3840, over 2 x 80^2.
  EXPECT_NEAR(s.token_density, 8192.0 / 12800.0, 1e-12);
  ASSERT_EQ(s.head_sparsity.size(), 2u);
  EXPECT_NEAR(s.head_sparsity[0], 1.0 - 6.0 / 9.0, 1e-12);
  EXPECT_NEAR(s.head_sparsity[1], 1.0 - 5.0 / 9.0, 1e-12);
  EXPECT_EQ(s.min_row_blocks, 1);
  EXPECT_EQ(s.bytes, 100);
}

TEST(Layout, HeadSparsityAveragesOverBatch) {
  // batch 2, heads 1, 2 blocks: batch 0 keeps 4 of 4, batch 1 keeps 2 of 4.
  const dr::BlockLayout l = dr_test::make_layout(2, 1, 64, 32, {{0, 1}, {0, 1}, {0}, {1}});
  const dr::LayoutStats s = dr::layout_stats(l, nullptr);
  ASSERT_EQ(s.head_sparsity.size(), 1u);
  EXPECT_NEAR(s.head_sparsity[0], 0.25, 1e-12);
  EXPECT_NEAR(s.density, 0.75, 1e-12);
  EXPECT_NEAR(s.token_density, 0.75, 1e-12);
  EXPECT_EQ(s.min_row_blocks, 1);
  // The smallest row need not be the last one.
  EXPECT_EQ(dr::layout_stats(dr_test::make_layout(1, 1, 96, 32, {{0}, {0, 1}, {0, 1, 2}}), nullptr).min_row_blocks, 1);
  EXPECT_EQ(dr::layout_stats(dr_test::make_layout(2, 1, 64, 32, {{0, 1}, {}, {0, 1}, {1}}), nullptr).min_row_blocks, 0);
  // An empty row brings min_row_blocks to 0.
  const dr::LayoutStats e = dr::layout_stats(dr_test::make_layout(1, 1, 64, 32, {{0, 1}, {}}), nullptr);
  EXPECT_EQ(e.min_row_blocks, 0);
  EXPECT_NEAR(e.density, 0.5, 1e-12);
}

TEST(Layout, StatsByDistanceWithPrior) {
  const dr::VideoGeometry g = hand_geometry();
  const dr::RadialPrior prior = dr::build_radial_prior(g, dr::RadialPriorParams{});
  ASSERT_EQ(prior.blocks, 3);
  const dr::LayoutStats s = dr::layout_stats(hand_layout(), &prior);
  // Block pairs by smallest frame distance: 0 -> 3 pairs, 1 -> 4 pairs, 3 -> 2 pairs.
  //   head 0 keeps 3/3, 2/4, 1/2; head 1 keeps 3/3, 1/4, 1/2.
  std::map<std::int64_t, dr::DistanceStats> by;
  for (const auto& d : s.by_distance) {
    EXPECT_TRUE(by.emplace(d.distance, d).second) << "distance " << d.distance << " listed twice";
  }
  ASSERT_EQ(by.size(), 3u);
  ASSERT_TRUE(by.count(0) && by.count(1) && by.count(3));
  EXPECT_EQ(by[0].total, 3);
  EXPECT_EQ(by[1].total, 4);
  EXPECT_EQ(by[3].total, 2);
  EXPECT_NEAR(by[0].kept_share, 1.0, 1e-12);
  EXPECT_NEAR(by[1].kept_share, 0.375, 1e-12);
  EXPECT_NEAR(by[3].kept_share, 0.5, 1e-12);
  EXPECT_NEAR(s.density, 11.0 / 18.0, 1e-12);
}

TEST(Layout, StatsRejectPriorOfAnotherGeometry) {
  dr::VideoGeometry g = hand_geometry();
  g.frames = 6;  // 96 tokens, the layout has 80
  const dr::RadialPrior prior = dr::build_radial_prior(g, dr::RadialPriorParams{});
  EXPECT_THROW(dr::layout_stats(hand_layout(), &prior), dr::Error);
}

TEST(Layout, LayoutFromPriorRepeatsThePrior) {
  dr::VideoGeometry g;
  g.frames = 9;
  g.height = 7;
  g.width = 11;
  g.block_size = 32;
  dr::RadialPriorParams p;
  p.first_frame_sink = false;
  p.gamma = 0.5;
  const dr::RadialPrior prior = dr::build_radial_prior(g, p);
  const dr::BlockLayout l = dr::layout_from_prior(prior, 2, 3);
  EXPECT_NO_THROW(dr::validate(l));
  EXPECT_EQ(l.tokens, dr::total_tokens(g));
  EXPECT_EQ(l.kept(), 6 * prior.size());
  const dr::LayoutStats s = dr::layout_stats(l, &prior);
  EXPECT_NEAR(s.density, prior.density(), 1e-12);
  for (double hs : s.head_sparsity) EXPECT_NEAR(hs, 1.0 - prior.density(), 1e-12);
  // Distance 0 pairs are forced, so all kept.
  for (const auto& d : s.by_distance) {
    if (d.distance == 0) {
      EXPECT_NEAR(d.kept_share, 1.0, 1e-12);
    }
    EXPECT_GE(d.kept_share, 0.0);
    EXPECT_LE(d.kept_share, 1.0);
  }
  std::int64_t pairs = 0;
  for (const auto& d : s.by_distance) pairs += d.total;
  EXPECT_EQ(pairs, prior.blocks * prior.blocks);  // every block holds video
}

TEST(Layout, Wan720pLayoutAtFifteenPercentFitsIn16MB) {
  dr::VideoGeometry g = dr::preset_geometry("wan2.1-14b-720p");
  g.heads = 40;
  ASSERT_EQ(dr::total_tokens(g), 75600);
  const dr::RadialPrior prior = dr::build_radial_prior(g, dr::RadialPriorParams{});
  const double blocks2 = static_cast<double>(prior.blocks * prior.blocks);
  const double forced = static_cast<double>(prior.count(dr::BlockKind::forced));
  const double candidates = static_cast<double>(prior.count(dr::BlockKind::near) + prior.count(dr::BlockKind::far));
  ASSERT_GT(candidates, 0.0);
  ASSERT_LT(forced / blocks2, 0.15) << "forced blocks alone exceed 15% density";
  // The share of candidates that brings the expected density to 15%.
  const double r = std::clamp((0.15 * blocks2 - forced) / candidates, 0.0, 1.0);
  dr_test::Rng rng(720);
  dr::PooledBlocks pooled;
  pooled.batch = 1;
  pooled.heads = 40;
  pooled.blocks = prior.blocks;
  pooled.head_dim = g.head_dim;
  pooled.q.resize(static_cast<std::size_t>(40 * prior.blocks * g.head_dim));
  pooled.k.resize(pooled.q.size());
  for (auto& x : pooled.q) x = static_cast<float>(rng.normal());
  for (auto& x : pooled.k) x = static_cast<float>(rng.normal());
  dr::SelectionParams sp;
  sp.r_near = sp.r_far = r;
  const dr::BlockLayout l = dr::select_blocks(prior, pooled, sp);
  const dr::LayoutStats s = dr::layout_stats(l, &prior);
  EXPECT_GT(s.density, 0.12);
  EXPECT_LT(s.density, 0.18);
  EXPECT_EQ(l.bytes(), static_cast<std::int64_t>(l.row_offsets.size() * sizeof(std::int64_t) +
                                                 l.col_indices.size() * sizeof(std::int32_t)));
  EXPECT_EQ(s.bytes, l.bytes());
  EXPECT_LT(l.bytes(), 16 * 1024 * 1024) << "density " << s.density;
}
