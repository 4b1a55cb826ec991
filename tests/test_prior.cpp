// Tests for prior.h: the radial prior against an independent brute-force construction written from
// the header's token-level definition and block reduction rule.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include "dynamicrad/geometry.h"
#include "dynamicrad/presets.h"
#include "dynamicrad/prior.h"
#include "test_support.h"

namespace dr = dynamicrad;
using dr_test::describe;

namespace {

const char* kind_name(dr::BlockKind k) {
  switch (k) {
    case dr::BlockKind::forced: return "forced";
    case dr::BlockKind::near: return "near";
    case dr::BlockKind::far: return "far";
  }
  return "?";
}

std::int64_t bitlen(std::int64_t d) {
  std::int64_t n = 0;
  while (d > 0) {
    ++n;
    d >>= 1;
  }
  return n;
}

bool is_power_of_two(double x) {
  int e = 0;
  return x > 0 && std::frexp(x, &e) == 0.5;
}

// True when the double product a * b was rounded (so `value > a * b` may depend on how the
// product is formed) and `value` lies within a hair of it.
bool product_tie(double a, double b, double value) {
  const double prod = a * b;
  const bool exact = std::fma(a, b, -prod) == 0.0;
  return !exact && std::fabs(value - prod) <= 1e-9 * std::max(1.0, std::fabs(prod));
}

struct Expected {
  std::int32_t col = 0;
  dr::BlockKind kind = dr::BlockKind::forced;
  bool ambiguous = false;  // a rounding tie decides whether it is kept: either answer is accepted
};

struct Tally {
  std::int64_t forced = 0, near = 0, far = 0, skipped = 0, ambiguous = 0, crossing = 0;
};

// The prior from the header's definition, token by token over sequence_coords.
std::vector<std::vector<Expected>> brute_force_prior(const dr::VideoGeometry& g,
                                                     const dr::RadialPriorParams& p, Tally& tally) {
  const auto coords = dr::sequence_coords(g);
  const std::int64_t T = static_cast<std::int64_t>(coords.size());
  const std::int64_t B = g.block_size;
  const std::int64_t nb = (T + B - 1) / B;
  const std::int64_t P = g.height * g.width;
  std::int64_t pow2 = 1;  // 2^ceil(log2 P)
  while (pow2 < P) pow2 *= 2;

  // Per frame distance: band half-width, near/far, k(d), and whether k(d) sits on a rounding tie.
  std::vector<double> w(static_cast<std::size_t>(g.frames + 1), 0.0);
  std::vector<char> near(w.size(), 0), k_tie(w.size(), 0);
  std::vector<std::int64_t> k(w.size(), 1);
  for (std::int64_t d = 1; d <= g.frames; ++d) {
    w[d] = static_cast<double>(pow2) * p.gamma / std::ldexp(1.0, static_cast<int>(bitlen(d)));
    near[d] = w[d] >= static_cast<double>(B);
    if (!near[d]) {
      const double q = static_cast<double>(B) / (p.lambda * w[d]);
      k[d] = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::floor(q)));
      const double r = std::nearbyint(q);
      k_tie[d] = r >= 2 && std::fabs(q - r) <= 1e-9 * q && !is_power_of_two(p.lambda * p.gamma);
    }
  }

  std::vector<char> has_text(static_cast<std::size_t>(nb), 0);
  for (std::int64_t t = 0; t < T; ++t)
    if (coords[t].text) has_text[t / B] = 1;

  std::vector<std::vector<Expected>> rows(static_cast<std::size_t>(nb));
  for (std::int64_t R = 0; R < nb; ++R) {
    const std::int64_t r0 = R * B, r1 = std::min(T, r0 + B);
    for (std::int64_t C = 0; C < nb; ++C) {
      const std::int64_t c0 = C * B, c1 = std::min(T, c0 + B);
      // Rule 1 and text: any dense pair forces the block.
      bool forced = has_text[R] || has_text[C];
      for (std::int64_t r = r0; r < r1 && !forced; ++r)
        for (std::int64_t c = c0; c < c1; ++c) {
          const std::int64_t i = coords[r].frame, j = coords[c].frame;
          const std::int64_t d = i > j ? i - j : j - i;
          if (d == 0 || (j == 0 && p.first_frame_sink) || (d == 1 && p.dense_adjacent)) {
            forced = true;
            break;
          }
        }
      if (forced) {
        rows[R].push_back({static_cast<std::int32_t>(C), dr::BlockKind::forced, false});
        ++tally.forced;
        continue;
      }
      // Band rule per key token c: kept(c) over the query tokens of R.
      const double size_r = static_cast<double>(r1 - r0);
      std::int64_t n_high = 0, n_nonzero = 0, d_min = std::numeric_limits<std::int64_t>::max();
      bool ambiguous = false;
      for (std::int64_t c = c0; c < c1; ++c) {
        const std::int64_t j = coords[c].frame;
        const std::int64_t sc = coords[c].y * g.width + coords[c].x;
        std::int64_t kept = 0;
        for (std::int64_t r = r0; r < r1; ++r) {
          const std::int64_t i = coords[r].frame;
          const std::int64_t d = i > j ? i - j : j - i;
          d_min = std::min(d_min, d);
          const std::int64_t sr = coords[r].y * g.width + coords[r].x;
          const std::int64_t ds = sr > sc ? sr - sc : sc - sr;
          bool keep;
          if (near[d]) {
            keep = static_cast<double>(ds) <= w[d];
          } else {
            keep = d % k[d] == 0 && ds <= B;
            ambiguous |= static_cast<bool>(k_tie[d]);
          }
          kept += keep;
        }
        const bool high = static_cast<double>(kept) > p.theta_c * size_r;
        ambiguous |= product_tie(p.theta_c, size_r, static_cast<double>(kept));
        n_high += high;
        n_nonzero += kept > 0;
      }
      const bool candidate = static_cast<double>(n_high) > p.theta_m * static_cast<double>(n_nonzero) &&
                             n_nonzero > 0;
      ambiguous |= n_nonzero > 0 &&
                   product_tie(p.theta_m, static_cast<double>(n_nonzero), static_cast<double>(n_high));
      if (n_high > 0 && n_high < n_nonzero) ++tally.crossing;
      const dr::BlockKind kind = near[d_min] ? dr::BlockKind::near : dr::BlockKind::far;
      if (ambiguous) {
        ++tally.ambiguous;
        rows[R].push_back({static_cast<std::int32_t>(C), kind, true});
      } else if (candidate) {
        rows[R].push_back({static_cast<std::int32_t>(C), kind, false});
        ++(kind == dr::BlockKind::near ? tally.near : tally.far);
      } else {
        ++tally.skipped;
      }
    }
  }
  return rows;
}

// Structure of a prior: CSR sizes, ascending columns, diagonal forced, frame ranges.
void check_structure(const dr::RadialPrior& prior, const dr::VideoGeometry& g) {
  const std::int64_t nb = dr::num_blocks(g);
  ASSERT_EQ(prior.blocks, nb);
  ASSERT_EQ(static_cast<std::int64_t>(prior.row_offsets.size()), nb + 1);
  ASSERT_EQ(prior.row_offsets.front(), 0);
  ASSERT_EQ(prior.row_offsets.back(), static_cast<std::int64_t>(prior.col_indices.size()));
  ASSERT_EQ(prior.kinds.size(), prior.col_indices.size());
  std::int64_t counts[3] = {0, 0, 0};
  for (std::int64_t R = 0; R < nb; ++R) {
    ASSERT_LE(prior.row_offsets[R], prior.row_offsets[R + 1]);
    bool diagonal = false;
    for (std::int64_t e = prior.row_offsets[R]; e < prior.row_offsets[R + 1]; ++e) {
      ASSERT_GE(prior.col_indices[e], 0);
      ASSERT_LT(prior.col_indices[e], nb);
      if (e > prior.row_offsets[R]) {
        ASSERT_LT(prior.col_indices[e - 1], prior.col_indices[e]) << "row " << R;
      }
      if (prior.col_indices[e] == R) {
        diagonal = true;
        EXPECT_EQ(prior.kinds[e], dr::BlockKind::forced) << "diagonal block " << R << " not forced";
      }
      ++counts[static_cast<int>(prior.kinds[e])];
    }
    EXPECT_TRUE(diagonal) << "row " << R << " misses its diagonal block";
  }
  EXPECT_EQ(prior.count(dr::BlockKind::forced), counts[0]);
  EXPECT_EQ(prior.count(dr::BlockKind::near), counts[1]);
  EXPECT_EQ(prior.count(dr::BlockKind::far), counts[2]);
  EXPECT_EQ(prior.size(), static_cast<std::int64_t>(prior.col_indices.size()));
  EXPECT_DOUBLE_EQ(prior.density(), static_cast<double>(prior.size()) / static_cast<double>(nb * nb));
  const auto spans = dr::block_spans(g);
  ASSERT_EQ(prior.frame_lo.size(), spans.size());
  ASSERT_EQ(prior.frame_hi.size(), spans.size());
  for (std::size_t b = 0; b < spans.size(); ++b) {
    EXPECT_EQ(prior.frame_lo[b], spans[b].frame_lo) << "block " << b;
    EXPECT_EQ(prior.frame_hi[b], spans[b].frame_hi) << "block " << b;
  }
}

// Compares build_radial_prior with the brute force; returns the number of mismatching pairs.
std::int64_t compare_with_brute_force(const dr::VideoGeometry& g, const dr::RadialPriorParams& p,
                                      Tally& tally) {
  SCOPED_TRACE(describe(g) + " " + describe(p));
  const dr::RadialPrior prior = dr::build_radial_prior(g, p);
  check_structure(prior, g);
  if (::testing::Test::HasFatalFailure()) return 1;
  const auto expected = brute_force_prior(g, p, tally);
  std::int64_t mismatches = 0;
  std::ostringstream report;
  auto note = [&](std::int64_t R, std::int32_t C, const std::string& what) {
    if (++mismatches <= 8) {
      report << "  block pair (" << R << ", " << C << "): " << what << " [frames R " << prior.frame_lo[R]
             << ".." << prior.frame_hi[R] << ", C " << prior.frame_lo[C] << ".." << prior.frame_hi[C]
             << "]\n";
    }
  };
  for (std::int64_t R = 0; R < prior.blocks; ++R) {
    std::map<std::int32_t, dr::BlockKind> got;
    for (std::int64_t e = prior.row_offsets[R]; e < prior.row_offsets[R + 1]; ++e)
      got[prior.col_indices[e]] = prior.kinds[e];
    std::map<std::int32_t, Expected> want;
    for (const Expected& x : expected[R]) want[x.col] = x;
    for (const auto& [C, x] : want) {
      auto it = got.find(C);
      if (it == got.end()) {
        if (!x.ambiguous) note(R, C, std::string("expected ") + kind_name(x.kind) + ", got skipped");
      } else if (it->second != x.kind) {
        note(R, C, std::string("expected ") + kind_name(x.kind) + ", got " + kind_name(it->second));
      }
    }
    for (const auto& [C, kind] : got)
      if (!want.count(C)) note(R, C, std::string("expected skipped, got ") + kind_name(kind));
  }
  EXPECT_EQ(mismatches, 0) << mismatches << " block pairs differ from the brute force:\n" << report.str();
  return mismatches;
}

}  // namespace

TEST(RadialPrior, BandHalfWidthHandValues) {
  // P = 100 -> 2^ceil(log2 100) = 128.
  EXPECT_DOUBLE_EQ(dr::band_half_width(100, 1.0, 1), 64.0);
  EXPECT_DOUBLE_EQ(dr::band_half_width(100, 1.0, 2), 32.0);
  EXPECT_DOUBLE_EQ(dr::band_half_width(100, 1.0, 3), 32.0);
  EXPECT_DOUBLE_EQ(dr::band_half_width(100, 1.0, 4), 16.0);
  EXPECT_DOUBLE_EQ(dr::band_half_width(100, 1.0, 7), 16.0);
  EXPECT_DOUBLE_EQ(dr::band_half_width(100, 1.0, 8), 8.0);
  EXPECT_DOUBLE_EQ(dr::band_half_width(128, 1.0, 1), 64.0);
  EXPECT_DOUBLE_EQ(dr::band_half_width(129, 1.0, 1), 128.0);
  EXPECT_DOUBLE_EQ(dr::band_half_width(100, 0.5, 1), 32.0);
  EXPECT_DOUBLE_EQ(dr::band_half_width(100, 3.0, 5), 48.0);
  EXPECT_DOUBLE_EQ(dr::band_half_width(1, 1.0, 1), 0.5);
  EXPECT_DOUBLE_EQ(dr::band_half_width(3600, 1.0, 20), 4096.0 / 32.0);  // Wan 720p, bitlen(20) = 5
}

TEST(RadialPrior, ValidateNamesTheBadField) {
  auto with = [](auto change) {
    dr::RadialPriorParams p;
    change(p);
    return p;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_NO_THROW(dr::validate(dr::RadialPriorParams{}));
  EXPECT_NO_THROW(dr::validate(with([](dr::RadialPriorParams& p) {
    p.gamma = 16.0;
    p.lambda = 1.0 / 16.0;
    p.theta_m = 0.0;
    p.theta_c = 0.0;
  })));
  EXPECT_NO_THROW(dr::validate(with([](dr::RadialPriorParams& p) { p.lambda = 16.0; })));
  EXPECT_DR_ERROR(dr::validate(with([](dr::RadialPriorParams& p) { p.gamma = 0.0; })), "gamma");
  EXPECT_DR_ERROR(dr::validate(with([](dr::RadialPriorParams& p) { p.gamma = -1.0; })), "gamma");
  EXPECT_DR_ERROR(dr::validate(with([](dr::RadialPriorParams& p) { p.gamma = 16.5; })), "gamma");
  EXPECT_DR_ERROR(dr::validate(with([nan](dr::RadialPriorParams& p) { p.gamma = nan; })), "gamma");
  EXPECT_DR_ERROR(dr::validate(with([](dr::RadialPriorParams& p) { p.lambda = 1.0 / 32.0; })), "lambda");
  EXPECT_DR_ERROR(dr::validate(with([](dr::RadialPriorParams& p) { p.lambda = 17.0; })), "lambda");
  EXPECT_DR_ERROR(dr::validate(with([nan](dr::RadialPriorParams& p) { p.lambda = nan; })), "lambda");
  EXPECT_DR_ERROR(dr::validate(with([](dr::RadialPriorParams& p) { p.theta_m = 1.0; })), "theta_m");
  EXPECT_DR_ERROR(dr::validate(with([](dr::RadialPriorParams& p) { p.theta_m = -0.1; })), "theta_m");
  EXPECT_DR_ERROR(dr::validate(with([nan](dr::RadialPriorParams& p) { p.theta_m = nan; })), "theta_m");
  EXPECT_DR_ERROR(dr::validate(with([](dr::RadialPriorParams& p) { p.theta_c = 1.0; })), "theta_c");
  EXPECT_DR_ERROR(dr::validate(with([](dr::RadialPriorParams& p) { p.theta_c = -0.01; })), "theta_c");
  EXPECT_DR_ERROR(dr::validate(with([nan](dr::RadialPriorParams& p) { p.theta_c = nan; })), "theta_c");
}

TEST(RadialPrior, MatchesBruteForceOnRandomGeometries) {
  dr_test::Rng rng(20260420);
  Tally tally;
  int geometries = 0, failures = 0;
  std::int64_t far_near_geometries = 0;
  for (int i = 0; i < 260; ++i) {
    const dr::VideoGeometry g = dr_test::random_geometry(rng, 3000);
    const dr::RadialPriorParams p = dr_test::random_prior_params(rng);
    Tally before = tally;
    failures += compare_with_brute_force(g, p, tally) != 0;
    if (tally.near > before.near && tally.far > before.far) ++far_near_geometries;
    ++geometries;
    if (HasFatalFailure() || failures >= 5) break;
  }
  // The random set must exercise every outcome of the rule.
  EXPECT_GT(tally.forced, 0);
  EXPECT_GT(tally.near, 100);
  EXPECT_GT(tally.far, 100);
  EXPECT_GT(tally.skipped, 100);
  EXPECT_GT(tally.crossing, 100) << "few block pairs cross a band edge";
  EXPECT_GT(far_near_geometries, 10);
  EXPECT_LT(tally.ambiguous * 1000, tally.near + tally.far + tally.skipped + 1)
      << "too many rounding ties to be a meaningful comparison";
  EXPECT_EQ(failures, 0) << "of " << geometries << " geometries";
}

TEST(RadialPrior, MatchesBruteForceWithExactParameters) {
  // Dyadic thresholds and power-of-two gamma / lambda: every product in the rule is exact, so there
  // are no rounding ties and every pair is checked.
  dr_test::Rng rng(99);
  Tally tally;
  int failures = 0;
  const std::vector<double> thetas{0.0, 0.25, 0.5, 0.75, 0.875};
  for (int i = 0; i < 60 && failures < 3; ++i) {
    const dr::VideoGeometry g = dr_test::random_geometry(rng, 2500);
    dr::RadialPriorParams p;
    p.gamma = std::ldexp(1.0, static_cast<int>(rng.integer(-3, 4)));
    p.lambda = std::ldexp(1.0, static_cast<int>(rng.integer(-4, 4)));
    p.theta_m = rng.pick(thetas);
    p.theta_c = rng.pick(thetas);
    p.dense_adjacent = rng.coin(0.3);
    p.first_frame_sink = rng.coin();
    failures += compare_with_brute_force(g, p, tally) != 0;
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(tally.ambiguous, 0);
  EXPECT_GT(tally.near + tally.far, 0);
}

TEST(RadialPrior, MatchesBruteForceWithDefaultParameters) {
  // The defaults (theta_c = 1/3, theta_m = 0.6) meet exact ties such as 3 > 0.6 * 5; those pairs
  // are accepted either way, every other pair must match.
  dr_test::Rng rng(3);
  Tally tally;
  int failures = 0;
  for (int i = 0; i < 40 && failures < 3; ++i) {
    const dr::VideoGeometry g = dr_test::random_geometry(rng, 2500);
    failures += compare_with_brute_force(g, dr::RadialPriorParams{}, tally) != 0;
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(tally.near + tally.far, 0);
}

TEST(RadialPrior, HandPickedGeometries) {
  Tally tally;
  std::vector<std::pair<dr::VideoGeometry, dr::RadialPriorParams>> cases;
  auto geom = [](std::int64_t f, std::int64_t h, std::int64_t w, int b, dr::TokenOrder o,
                 std::int64_t text = 0, dr::TextPlacement pl = dr::TextPlacement::none) {
    dr::VideoGeometry g;
    g.frames = f;
    g.height = h;
    g.width = w;
    g.block_size = b;
    g.order = o;
    g.text_tokens = text;
    g.text_placement = pl;
    return g;
  };
  dr::RadialPriorParams sinkless;
  sinkless.first_frame_sink = false;
  sinkless.theta_m = 0.3;
  sinkless.theta_c = 0.1;
  dr::RadialPriorParams wide = sinkless;
  wide.gamma = 4.0;
  wide.lambda = 0.25;
  dr::RadialPriorParams narrow = sinkless;
  narrow.gamma = 0.125;
  narrow.lambda = 8.0;
  for (const auto& p : {sinkless, wide, narrow, dr::RadialPriorParams{}}) {
    cases.push_back({geom(1, 30, 40, 128, dr::TokenOrder::raster), p});          // one frame
    cases.push_back({geom(16, 4, 4, 32, dr::TokenOrder::raster), p});            // 16 tokens/frame
    cases.push_back({geom(12, 9, 13, 64, dr::TokenOrder::raster), p});           // 117 tokens/frame
    cases.push_back({geom(10, 9, 13, 32, dr::TokenOrder::tiled3d), p});
    cases.push_back({geom(9, 16, 16, 128, dr::TokenOrder::tiled3d), p});
    cases.push_back({geom(8, 10, 12, 64, dr::TokenOrder::raster, 50, dr::TextPlacement::prefix), p});
    cases.push_back({geom(8, 10, 12, 64, dr::TokenOrder::tiled3d, 77, dr::TextPlacement::suffix), p});
    cases.push_back({geom(40, 1, 3, 32, dr::TokenOrder::raster), p});            // many tiny frames
  }
  for (const auto& [g, p] : cases) {
    compare_with_brute_force(g, p, tally);
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(tally.near, 0);
  EXPECT_GT(tally.far, 0);
  EXPECT_GT(tally.skipped, 0);
}

TEST(RadialPrior, OneFrameIsAllForced) {
  dr::VideoGeometry g;
  g.frames = 1;
  g.height = 20;
  g.width = 21;
  g.block_size = 32;
  dr::RadialPriorParams p;
  p.first_frame_sink = false;
  const auto prior = dr::build_radial_prior(g, p);
  const std::int64_t nb = dr::num_blocks(g);
  EXPECT_EQ(prior.size(), nb * nb);
  EXPECT_EQ(prior.count(dr::BlockKind::forced), nb * nb);
  EXPECT_DOUBLE_EQ(prior.density(), 1.0);
}

TEST(RadialPrior, TextBlocksAreForcedBothWays) {
  dr::VideoGeometry g;
  g.frames = 12;
  g.height = 8;
  g.width = 8;
  g.block_size = 64;
  g.text_tokens = 64;
  g.text_placement = dr::TextPlacement::prefix;
  dr::RadialPriorParams p;
  p.gamma = 0.0625;
  p.first_frame_sink = false;
  const auto prior = dr::build_radial_prior(g, p);
  const std::int64_t nb = prior.blocks;
  ASSERT_EQ(nb, 13);
  // Block 0 is all text: its row and its column are full and forced.
  for (std::int64_t e = prior.row_offsets[0]; e < prior.row_offsets[1]; ++e)
    EXPECT_EQ(prior.kinds[e], dr::BlockKind::forced);
  EXPECT_EQ(prior.row_offsets[1] - prior.row_offsets[0], nb);
  for (std::int64_t R = 0; R < nb; ++R) {
    ASSERT_GT(prior.row_offsets[R + 1], prior.row_offsets[R]);
    EXPECT_EQ(prior.col_indices[prior.row_offsets[R]], 0);
    EXPECT_EQ(prior.kinds[prior.row_offsets[R]], dr::BlockKind::forced);
  }
  // Far apart frames with a tiny gamma are skipped.
  EXPECT_LT(prior.size(), nb * nb);
}

TEST(RadialPrior, BlockFrameDistance) {
  dr_test::Rng rng(5);
  for (int i = 0; i < 40; ++i) {
    const dr::VideoGeometry g = dr_test::random_geometry(rng, 3000);
    SCOPED_TRACE(describe(g));
    const auto prior = dr::build_radial_prior(g, dr::RadialPriorParams{});
    const auto spans = dr::block_spans(g);
    for (std::int64_t a = 0; a < prior.blocks; ++a)
      for (std::int64_t b = 0; b < prior.blocks; ++b) {
        std::int64_t want = -1;
        if (spans[a].frame_lo >= 0 && spans[b].frame_lo >= 0) {
          want = std::numeric_limits<std::int64_t>::max();
          for (const auto& ra : spans[a].runs)
            for (const auto& rb : spans[b].runs) want = std::min<std::int64_t>(want, ra.frame > rb.frame ? ra.frame - rb.frame : rb.frame - ra.frame);
        }
        ASSERT_EQ(dr::block_frame_distance(prior, a, b), want) << "blocks " << a << ", " << b;
      }
  }
}

TEST(RadialPrior, PresetGeometryStructure) {
  // Full-size Wan 480p: 32,760 tokens, 256 blocks; too large for the brute force, structure only.
  const dr::VideoGeometry g = dr::preset_geometry("wan2.1-14b-480p");
  dr::validate(g);
  const auto prior = dr::build_radial_prior(g, dr::RadialPriorParams{});
  check_structure(prior, g);
  EXPECT_GT(prior.count(dr::BlockKind::near) + prior.count(dr::BlockKind::far), 0);
  EXPECT_LT(prior.density(), 1.0);
  EXPECT_EQ(prior.geometry.frames, g.frames);
  EXPECT_EQ(prior.params.gamma, dr::RadialPriorParams{}.gamma);
}

TEST(RadialPrior, TiledBlocksWithGapsInTheirFrames) {
  // With a text prefix that is not a whole number of blocks, a tiled3d block can hold the end of
  // the last full tile (late frames) and the start of the first partial tile (early frames), so its
  // frames are not a contiguous range: near / far must use the frames actually present.
  dr_test::Rng rng(404);
  Tally tally;
  int failures = 0;
  for (int i = 0; i < 150 && failures < 3; ++i) {
    dr::VideoGeometry g;
    g.block_size = static_cast<int>(rng.pick(std::vector<std::int64_t>{32, 64, 128}));
    g.order = dr::TokenOrder::tiled3d;
    const dr::Tile t = dr::default_tile(g.block_size);
    g.frames = t.t * rng.integer(2, 5) + rng.integer(0, t.t - 1) + (t.t == 1 ? rng.integer(0, 3) : 0);
    g.height = t.h * rng.integer(1, 2) + rng.integer(1, t.h - 1);
    g.width = t.w * rng.integer(1, 2) + rng.integer(1, t.w - 1);
    g.text_tokens = rng.integer(1, g.block_size - 1);
    g.text_placement = dr::TextPlacement::prefix;
    if (dr::total_tokens(g) > 3000) continue;
    dr::RadialPriorParams p = dr_test::random_prior_params(rng);
    p.gamma = rng.log_uniform(1.0 / 16.0, 1.0);
    p.dense_adjacent = false;
    failures += compare_with_brute_force(g, p, tally) != 0;
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(tally.near + tally.far, 0);
}

TEST(RadialPrior, DistinctFramesPerBlock) {
  dr_test::Rng rng(12);
  for (int i = 0; i < 80; ++i) {
    dr::VideoGeometry g = dr_test::random_geometry(rng, 3000);
    if (i % 2) {  // unaligned text prefixes in the tiled order give blocks with gaps in their frames
      g.order = dr::TokenOrder::tiled3d;
      g.text_placement = dr::TextPlacement::prefix;
      g.text_tokens = rng.integer(1, g.block_size - 1);
    }
    SCOPED_TRACE(describe(g));
    const auto prior = dr::build_radial_prior(g, dr::RadialPriorParams{});
    const auto coords = dr::sequence_coords(g);
    ASSERT_EQ(static_cast<std::int64_t>(prior.frame_offsets.size()), prior.blocks + 1);
    ASSERT_EQ(prior.frame_offsets.front(), 0);
    ASSERT_EQ(prior.frame_offsets.back(), static_cast<std::int64_t>(prior.frames.size()));
    for (std::int64_t b = 0; b < prior.blocks; ++b) {
      std::set<std::int32_t> want;
      for (std::int64_t p = b * g.block_size; p < std::min<std::int64_t>(dr::total_tokens(g), (b + 1) * g.block_size); ++p)
        if (!coords[p].text) want.insert(static_cast<std::int32_t>(coords[p].frame));
      const std::vector<std::int32_t> got(prior.frames.begin() + prior.frame_offsets[b],
                                          prior.frames.begin() + prior.frame_offsets[b + 1]);
      ASSERT_EQ(got, std::vector<std::int32_t>(want.begin(), want.end())) << "block " << b;
    }
  }
}

TEST(RadialPrior, ThreadCountDoesNotChangeTheResult) {
  const dr::VideoGeometry g = dr::preset_geometry("wan2.1-14b-480p");
  dr::RadialPriorParams p;
  p.gamma = 0.7;
  p.lambda = 0.5;
  const dr::RadialPrior one = dr::build_radial_prior(g, p, 1);
  for (int threads : {0, 2, 3}) {
    const dr::RadialPrior many = dr::build_radial_prior(g, p, threads);
    EXPECT_EQ(many.row_offsets, one.row_offsets) << threads << " threads";
    EXPECT_EQ(many.col_indices, one.col_indices) << threads << " threads";
    EXPECT_TRUE(many.kinds == one.kinds) << threads << " threads";
  }
  EXPECT_THROW(dr::build_radial_prior(g, p, -1), dr::Error);
}

TEST(RadialPriorParams, OutOfRangeValuesAreShownAsGiven) {
  // Six-decimal printing showed 16.000000000000004 as "16.000000", a value inside the range.
  dr::RadialPriorParams p;
  p.gamma = 16.000000000000004;
  EXPECT_EQ(dr_test::error_message([&] { dr::validate(p); }), "prior.gamma: 16.000000000000004: allowed range (0, 16]");
  p = dr::RadialPriorParams{};
  p.theta_m = -1e-300;
  EXPECT_EQ(dr_test::error_message([&] { dr::validate(p); }), "prior.theta_m: -1e-300: allowed range [0, 1)");
}
