// Tests for geometry.h: validation, token orders (raster / tiled3d), sequence coordinates and block
// spans.
#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "dynamicrad/geometry.h"
#include "test_support.h"

namespace dr = dynamicrad;
using dr_test::describe;

namespace {

dr::VideoGeometry small_geometry() {
  dr::VideoGeometry g;
  g.frames = 3;
  g.height = 5;
  g.width = 7;
  g.block_size = 32;
  return g;
}

// Native (raster) position of a sequence coordinate: text keeps its place, video tokens are
// frame-major, then row, then column, after a text prefix.
std::int64_t native_position(const dr::VideoGeometry& g, const dr::TokenCoord& c, std::int64_t seq_pos) {
  if (c.text) return seq_pos;
  const std::int64_t prefix = g.text_placement == dr::TextPlacement::prefix ? g.text_tokens : 0;
  return prefix + (c.frame * g.height + c.y) * g.width + c.x;
}

// Checks the permutation contract for one geometry (bijection, inverse, text fixed, coords agree).
void check_permutation(const dr::VideoGeometry& g) {
  SCOPED_TRACE(describe(g));
  const std::int64_t total = dr::total_tokens(g);
  const auto perm = dr::token_permutation(g);
  ASSERT_EQ(static_cast<std::int64_t>(perm.size()), total);
  std::vector<char> seen(static_cast<std::size_t>(total), 0);
  for (std::int64_t p = 0; p < total; ++p) {
    ASSERT_GE(perm[p], 0);
    ASSERT_LT(perm[p], total);
    ASSERT_FALSE(seen[perm[p]]) << "native position " << perm[p] << " appears twice";
    seen[perm[p]] = 1;
  }
  const auto inv = dr::inverse_permutation(perm);
  ASSERT_EQ(inv.size(), perm.size());
  for (std::int64_t p = 0; p < total; ++p) {
    ASSERT_EQ(inv[perm[p]], p);
    ASSERT_EQ(perm[inv[p]], p);
  }
  const auto coords = dr::sequence_coords(g);
  ASSERT_EQ(static_cast<std::int64_t>(coords.size()), total);
  const std::int64_t vb = dr::video_begin(g);
  const std::int64_t vt = dr::video_tokens(g);
  for (std::int64_t p = 0; p < total; ++p) {
    const bool is_text = p < vb || p >= vb + vt;
    ASSERT_EQ(coords[p].text, is_text) << "position " << p;
    if (is_text) {
      ASSERT_EQ(perm[p], p) << "text token moved";
      continue;
    }
    ASSERT_GE(coords[p].frame, 0);
    ASSERT_LT(coords[p].frame, g.frames);
    ASSERT_GE(coords[p].y, 0);
    ASSERT_LT(coords[p].y, g.height);
    ASSERT_GE(coords[p].x, 0);
    ASSERT_LT(coords[p].x, g.width);
    ASSERT_EQ(native_position(g, coords[p], p), perm[p]) << "position " << p;
    ASSERT_EQ(dr::spatial_index(g, coords[p]), coords[p].y * g.width + coords[p].x);
  }
  if (g.order == dr::TokenOrder::raster) {
    for (std::int64_t p = 0; p < total; ++p) ASSERT_EQ(perm[p], p) << "raster must be the identity";
  }
}

// Maximal runs of one block computed from sequence coordinates.
std::vector<dr::TokenRun> runs_from_coords(const dr::VideoGeometry& g,
                                           const std::vector<dr::TokenCoord>& coords,
                                           std::int64_t begin, std::int64_t end) {
  std::vector<dr::TokenRun> runs;
  for (std::int64_t p = begin; p < end; ++p) {
    if (coords[p].text) continue;
    const std::int64_t s = dr::spatial_index(g, coords[p]);
    if (!runs.empty()) {
      dr::TokenRun& last = runs.back();
      if (last.begin + last.count == p && last.frame == coords[p].frame &&
          last.spatial_begin + last.count == s) {
        ++last.count;
        continue;
      }
    }
    dr::TokenRun r;
    r.begin = p;
    r.frame = coords[p].frame;
    r.spatial_begin = s;
    r.count = 1;
    runs.push_back(r);
  }
  return runs;
}

void check_spans(const dr::VideoGeometry& g) {
  SCOPED_TRACE(describe(g));
  const auto coords = dr::sequence_coords(g);
  const auto spans = dr::block_spans(g);
  const std::int64_t total = dr::total_tokens(g);
  const std::int64_t B = g.block_size;
  ASSERT_EQ(dr::num_blocks(g), (total + B - 1) / B);
  ASSERT_EQ(static_cast<std::int64_t>(spans.size()), dr::num_blocks(g));
  for (std::size_t b = 0; b < spans.size(); ++b) {
    SCOPED_TRACE("block " + std::to_string(b));
    const dr::BlockSpan& s = spans[b];
    const std::int64_t begin = static_cast<std::int64_t>(b) * B;
    const std::int64_t end = std::min(total, begin + B);
    EXPECT_EQ(s.begin, begin);
    EXPECT_EQ(s.size, end - begin);
    std::int64_t text = 0, lo = -1, hi = -1;
    for (std::int64_t p = begin; p < end; ++p) {
      if (coords[p].text) {
        ++text;
      } else {
        lo = lo < 0 ? coords[p].frame : std::min(lo, coords[p].frame);
        hi = std::max(hi, coords[p].frame);
      }
    }
    EXPECT_EQ(s.text_count, text);
    EXPECT_EQ(s.frame_lo, lo);
    EXPECT_EQ(s.frame_hi, hi);
    const auto expected = runs_from_coords(g, coords, begin, end);
    ASSERT_EQ(s.runs.size(), expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(s.runs[i].begin, expected[i].begin) << "run " << i;
      EXPECT_EQ(s.runs[i].frame, expected[i].frame) << "run " << i;
      EXPECT_EQ(s.runs[i].spatial_begin, expected[i].spatial_begin) << "run " << i;
      EXPECT_EQ(s.runs[i].count, expected[i].count) << "run " << i;
    }
  }
  if (!spans.empty()) {
    const std::int64_t last = total - (static_cast<std::int64_t>(spans.size()) - 1) * B;
    EXPECT_EQ(spans.back().size, last) << "last block is short";
  }
}

// For tiled3d: the first (number of full tiles) groups of block_size video positions each hold one
// compact full tile aligned to the tile grid; every tile (full or partial) occupies a contiguous
// range of positions.
void check_tiles(const dr::VideoGeometry& g) {
  SCOPED_TRACE(describe(g));
  const dr::Tile t = dr::effective_tile(g);
  ASSERT_EQ(t.t * t.h * t.w, g.block_size);
  const auto coords = dr::sequence_coords(g);
  const std::int64_t vb = dr::video_begin(g);
  const std::int64_t vt = dr::video_tokens(g);
  const std::int64_t full = (g.frames / t.t) * (g.height / t.h) * (g.width / t.w);
  std::set<std::tuple<std::int64_t, std::int64_t, std::int64_t>> full_tiles_seen;
  for (std::int64_t k = 0; k < full; ++k) {
    std::int64_t f0 = INT64_MAX, y0 = INT64_MAX, x0 = INT64_MAX, f1 = -1, y1 = -1, x1 = -1;
    std::set<std::tuple<std::int64_t, std::int64_t, std::int64_t>> cells;
    for (std::int64_t p = vb + k * g.block_size; p < vb + (k + 1) * g.block_size; ++p) {
      const auto& c = coords[p];
      ASSERT_FALSE(c.text);
      f0 = std::min(f0, c.frame), f1 = std::max(f1, c.frame);
      y0 = std::min(y0, c.y), y1 = std::max(y1, c.y);
      x0 = std::min(x0, c.x), x1 = std::max(x1, c.x);
      cells.insert({c.frame, c.y, c.x});
    }
    ASSERT_EQ(static_cast<int>(cells.size()), g.block_size);
    ASSERT_EQ(f1 - f0 + 1, t.t) << "full tile " << k << " is not t frames deep";
    ASSERT_EQ(y1 - y0 + 1, t.h) << "full tile " << k << " is not h rows high";
    ASSERT_EQ(x1 - x0 + 1, t.w) << "full tile " << k << " is not w columns wide";
    ASSERT_EQ(f0 % t.t, 0);
    ASSERT_EQ(y0 % t.h, 0);
    ASSERT_EQ(x0 % t.w, 0);
    ASSERT_TRUE(full_tiles_seen.insert({f0, y0, x0}).second) << "tile repeated";
  }
  // Every tile's positions are contiguous.
  std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, std::pair<std::int64_t, std::int64_t>> range;
  std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, std::int64_t> count;
  for (std::int64_t p = vb; p < vb + vt; ++p) {
    const auto& c = coords[p];
    const auto key = std::make_tuple(c.frame / t.t, c.y / t.h, c.x / t.w);
    auto it = range.find(key);
    if (it == range.end()) {
      range[key] = {p, p};
    } else {
      it->second.first = std::min(it->second.first, p);
      it->second.second = std::max(it->second.second, p);
    }
    ++count[key];
  }
  for (const auto& [key, r] : range) {
    EXPECT_EQ(r.second - r.first + 1, count[key])
        << "tile (" << std::get<0>(key) << "," << std::get<1>(key) << "," << std::get<2>(key)
        << ") is not contiguous in the sequence";
  }
}

}  // namespace

TEST(Geometry, ValidAcceptsDefaultsAndEveryBlockSize) {
  for (int b : {32, 64, 128}) {
    dr::VideoGeometry g = small_geometry();
    g.block_size = b;
    EXPECT_NO_THROW(dr::validate(g));
    g.order = dr::TokenOrder::tiled3d;
    EXPECT_NO_THROW(dr::validate(g));
    for (const dr::Tile& t : dr_test::tiles_for(b)) {
      g.tile = t;
      EXPECT_NO_THROW(dr::validate(g)) << t.t << "x" << t.h << "x" << t.w;
    }
  }
  EXPECT_NO_THROW(dr::validate(dr::VideoGeometry{}));
}

TEST(Geometry, ValidateNamesTheBadField) {
  auto with = [](auto change) {
    dr::VideoGeometry g = small_geometry();
    change(g);
    return g;
  };
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) { g.frames = 0; })), "frames");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) { g.height = 0; })), "height");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) { g.width = 0; })), "width");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) { g.batch = 0; })), "batch");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) { g.heads = 0; })), "heads");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) { g.head_dim = 0; })), "head_dim");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) { g.frames = -2; })), "frames");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) { g.width = -1; })), "width");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) { g.block_size = 48; })), "block_size");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) { g.block_size = 256; })), "block_size");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) { g.block_size = 0; })), "block_size");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) { g.block_size = 16; })), "block_size");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) { g.text_tokens = 10; })),
                  "text_tokens", "text_placement");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) {
                    g.text_placement = dr::TextPlacement::prefix;
                  })),
                  "text_tokens", "text_placement");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) {
                    g.text_placement = dr::TextPlacement::suffix;
                  })),
                  "text_tokens", "text_placement");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) {
                    g.text_tokens = -5;
                    g.text_placement = dr::TextPlacement::prefix;
                  })),
                  "text_tokens");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) {
                    g.order = dr::TokenOrder::tiled3d;
                    g.tile = dr::Tile{1, 4, 4};  // 16 != 32
                  })),
                  "tile");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) {
                    g.order = dr::TokenOrder::tiled3d;
                    g.block_size = 64;
                    g.tile = dr::Tile{2, 8, 8};  // 128 != 64
                  })),
                  "tile");
  EXPECT_DR_ERROR(dr::validate(with([](dr::VideoGeometry& g) {
                    g.order = dr::TokenOrder::tiled3d;
                    g.tile = dr::Tile{-1, -4, 8};  // product 32 but negative
                  })),
                  "tile");
}

// Sequence positions are int32: 2^31 - 1 tokens is the most a geometry may hold, not one fewer.
TEST(Geometry, TokensUpToTheInt32LimitAreAccepted) {
  dr::VideoGeometry g = small_geometry();
  g.heads = 1;
  g.head_dim = 1;
  g.frames = 1;
  g.height = 1;
  g.width = 2147483646;
  g.text_tokens = 1;  // 2^31 - 1 tokens in all
  g.text_placement = dr::TextPlacement::suffix;
  EXPECT_NO_THROW(dr::validate(g));
  g.text_tokens = 2;  // 2^31
  EXPECT_DR_ERROR(dr::validate(g), "geometry");
}

TEST(Geometry, ErrorCarriesFieldName) {
  dr::VideoGeometry g = small_geometry();
  g.block_size = 48;
  try {
    dr::validate(g);
    FAIL() << "expected an Error";
  } catch (const dr::Error& e) {
    EXPECT_TRUE(dr_test::names_word(e.field(), "block_size")) << e.field();
    EXPECT_NE(std::string(e.what()).find("48"), std::string::npos)
        << "message should show the bad value: " << e.what();
  }
}

TEST(Geometry, Counts) {
  dr::VideoGeometry g = small_geometry();
  g.text_tokens = 11;
  g.text_placement = dr::TextPlacement::prefix;
  EXPECT_EQ(dr::tokens_per_frame(g), 35);
  EXPECT_EQ(dr::video_tokens(g), 105);
  EXPECT_EQ(dr::total_tokens(g), 116);
  EXPECT_EQ(dr::num_blocks(g), 4);
  EXPECT_EQ(dr::video_begin(g), 11);
  g.text_placement = dr::TextPlacement::suffix;
  EXPECT_EQ(dr::video_begin(g), 0);
  g.block_size = 128;
  EXPECT_EQ(dr::num_blocks(g), 1);
  g.frames = 4;  // 140 + 11 = 151
  EXPECT_EQ(dr::num_blocks(g), 2);
}

TEST(Geometry, DefaultTiles) {
  auto eq = [](dr::Tile a, dr::Tile b) { return a.t == b.t && a.h == b.h && a.w == b.w; };
  EXPECT_TRUE(eq(dr::default_tile(128), dr::Tile{2, 8, 8}));
  EXPECT_TRUE(eq(dr::default_tile(64), dr::Tile{1, 8, 8}));
  EXPECT_TRUE(eq(dr::default_tile(32), dr::Tile{1, 4, 8}));
  dr::VideoGeometry g = small_geometry();
  g.order = dr::TokenOrder::tiled3d;
  EXPECT_TRUE(eq(dr::effective_tile(g), dr::Tile{1, 4, 8}));
  g.tile = dr::Tile{2, 4, 4};
  EXPECT_TRUE(eq(dr::effective_tile(g), dr::Tile{2, 4, 4}));
}

TEST(Geometry, ParseAndPrintNames) {
  for (auto p : {dr::TextPlacement::none, dr::TextPlacement::prefix, dr::TextPlacement::suffix})
    EXPECT_EQ(dr::parse_text_placement(dr::to_string(p)), p);
  for (auto o : {dr::TokenOrder::raster, dr::TokenOrder::tiled3d})
    EXPECT_EQ(dr::parse_token_order(dr::to_string(o)), o);
  EXPECT_EQ(dr::to_string(dr::TokenOrder::tiled3d), "tiled3d");
  EXPECT_EQ(dr::to_string(dr::TextPlacement::suffix), "suffix");
  EXPECT_THROW(dr::parse_token_order("zigzag"), dr::Error);
  EXPECT_THROW(dr::parse_text_placement("middle"), dr::Error);
}

TEST(Geometry, RasterIsIdentityWithText) {
  for (auto placement : {dr::TextPlacement::none, dr::TextPlacement::prefix, dr::TextPlacement::suffix}) {
    dr::VideoGeometry g = small_geometry();
    if (placement != dr::TextPlacement::none) {
      g.text_tokens = 13;
      g.text_placement = placement;
    }
    check_permutation(g);
    const auto coords = dr::sequence_coords(g);
    const std::int64_t vb = dr::video_begin(g);
    // Spot check raster coordinates.
    EXPECT_EQ(coords[vb].frame, 0);
    EXPECT_EQ(coords[vb + 8].y, 1);
    EXPECT_EQ(coords[vb + 8].x, 1);
    EXPECT_EQ(coords[vb + 35 + 34].frame, 1);
    EXPECT_EQ(coords[vb + 35 + 34].y, 4);
    EXPECT_EQ(coords[vb + 35 + 34].x, 6);
  }
}

TEST(Geometry, PermutationContractOnManyGeometries) {
  dr_test::Rng rng(101);
  for (int i = 0; i < 150; ++i) {
    dr::VideoGeometry g = dr_test::random_geometry(rng, 4000);
    check_permutation(g);
    if (HasFatalFailure()) return;
  }
}

TEST(Geometry, Tiled3dBlocksAreCompactTilesWhenDimensionsDivide) {
  for (int b : {32, 64, 128}) {
    std::vector<dr::Tile> tiles = dr_test::tiles_for(b);
    tiles.push_back(dr::Tile{});
    for (const dr::Tile& tile : tiles) {
      for (auto placement : {dr::TextPlacement::none, dr::TextPlacement::suffix, dr::TextPlacement::prefix}) {
        dr::VideoGeometry g;
        g.block_size = b;
        g.order = dr::TokenOrder::tiled3d;
        g.tile = tile;
        const dr::Tile t = dr::effective_tile(g);
        g.frames = t.t * 2;
        g.height = t.h * 2;
        g.width = t.w * 3;
        if (placement != dr::TextPlacement::none) {
          g.text_placement = placement;
          // A prefix of whole blocks keeps tiles aligned to blocks; a suffix may be any length.
          g.text_tokens = placement == dr::TextPlacement::prefix ? b : 7;
        }
        SCOPED_TRACE(describe(g));
        check_permutation(g);
        check_tiles(g);
        // Every video block is one compact tile: t frames, h rows, w columns.
        const auto spans = dr::block_spans(g);
        const auto coords = dr::sequence_coords(g);
        for (const auto& s : spans) {
          if (s.text_count > 0) continue;
          ASSERT_EQ(s.size, b);
          std::int64_t y0 = INT64_MAX, y1 = -1, x0 = INT64_MAX, x1 = -1;
          for (std::int64_t p = s.begin; p < s.begin + s.size; ++p) {
            y0 = std::min(y0, coords[p].y), y1 = std::max(y1, coords[p].y);
            x0 = std::min(x0, coords[p].x), x1 = std::max(x1, coords[p].x);
          }
          EXPECT_EQ(s.frame_hi - s.frame_lo + 1, t.t);
          EXPECT_EQ(y1 - y0 + 1, t.h);
          EXPECT_EQ(x1 - x0 + 1, t.w);
        }
      }
    }
  }
}

TEST(Geometry, Tiled3dFullTilesFirstWithRaggedDimensions) {
  dr_test::Rng rng(7);
  int checked = 0;
  for (int i = 0; i < 120; ++i) {
    dr::VideoGeometry g = dr_test::random_geometry(rng, 5000);
    g.order = dr::TokenOrder::tiled3d;
    check_tiles(g);
    if (HasFatalFailure()) return;
    ++checked;
  }
  // Hand-picked ragged cases: 1 frame with a 2-frame tile, sizes one short of / one past the tile.
  for (auto dims : std::vector<std::array<std::int64_t, 3>>{{1, 9, 9}, {3, 17, 15}, {5, 8, 8}, {2, 7, 8}, {4, 16, 17}}) {
    for (int b : {32, 64, 128}) {
      dr::VideoGeometry g;
      g.block_size = b;
      g.order = dr::TokenOrder::tiled3d;
      g.frames = dims[0];
      g.height = dims[1];
      g.width = dims[2];
      check_permutation(g);
      check_tiles(g);
      check_spans(g);
      if (HasFatalFailure()) return;
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

TEST(Geometry, BlockSpansAgreeWithSequenceCoords) {
  // Hand cases: short last block, text prefix and suffix straddling blocks, 1 token per frame.
  std::vector<dr::VideoGeometry> cases;
  {
    dr::VideoGeometry g = small_geometry();  // 105 tokens, block 32: 4 blocks, last has 9
    cases.push_back(g);
    g.text_tokens = 40;
    g.text_placement = dr::TextPlacement::prefix;
    cases.push_back(g);
    g.text_placement = dr::TextPlacement::suffix;
    cases.push_back(g);
    g.order = dr::TokenOrder::tiled3d;
    cases.push_back(g);
    dr::VideoGeometry one;
    one.frames = 70;
    one.block_size = 32;
    cases.push_back(one);
  }
  for (const auto& g : cases) check_spans(g);
  // The first hand case explicitly.
  const auto spans = dr::block_spans(cases[0]);
  ASSERT_EQ(spans.size(), 4u);
  EXPECT_EQ(spans[3].size, 9);
  EXPECT_EQ(spans[0].frame_lo, 0);
  EXPECT_EQ(spans[0].frame_hi, 0);
  EXPECT_EQ(spans[1].frame_lo, 0);  // positions 32..63: frame 0 (32..34), frame 1 (35..63)
  EXPECT_EQ(spans[1].frame_hi, 1);
  ASSERT_EQ(spans[1].runs.size(), 2u);
  EXPECT_EQ(spans[1].runs[0].begin, 32);
  EXPECT_EQ(spans[1].runs[0].spatial_begin, 32);
  EXPECT_EQ(spans[1].runs[0].count, 3);
  EXPECT_EQ(spans[1].runs[1].frame, 1);
  EXPECT_EQ(spans[1].runs[1].spatial_begin, 0);
  EXPECT_EQ(spans[1].runs[1].count, 29);
  // Prefix case: block 1 holds 8 text tokens then video.
  const auto pspans = dr::block_spans(cases[1]);
  EXPECT_EQ(pspans[0].text_count, 32);
  EXPECT_EQ(pspans[0].frame_lo, -1);
  EXPECT_EQ(pspans[0].frame_hi, -1);
  EXPECT_TRUE(pspans[0].runs.empty());
  EXPECT_EQ(pspans[1].text_count, 8);
  ASSERT_FALSE(pspans[1].runs.empty());
  EXPECT_EQ(pspans[1].runs[0].begin, 40);

  dr_test::Rng rng(55);
  for (int i = 0; i < 150; ++i) {
    check_spans(dr_test::random_geometry(rng, 4000));
    if (HasFatalFailure()) return;
  }
}
