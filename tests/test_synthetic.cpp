// Tests for synthetic.h: the motion-proxy Q/K/V generator.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "dynamicrad/geometry.h"
#include "dynamicrad/motion.h"
#include "dynamicrad/synthetic.h"
#include "test_support.h"

namespace dr = dynamicrad;

namespace {

dr::VideoGeometry video(std::int64_t frames = 8) {
  dr::VideoGeometry g;
  g.batch = 2;
  g.heads = 2;
  g.head_dim = 32;
  g.frames = frames;
  g.height = 8;
  g.width = 10;
  g.block_size = 64;
  return g;
}

bool same_bits(const dr::HostTensor& a, const dr::HostTensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const std::size_t bytes = static_cast<std::size_t>(a.shape().elements()) * dr::dtype_size(a.dtype());
  return std::memcmp(a.view().data, b.view().data, bytes) == 0;
}

// Mean over (batch, head, spatial position) of the cosine similarity between the key vectors of
// frame f0 and frame f1 at the same spatial position.
double frame_cosine(const dr::HostTensor& k, const dr::VideoGeometry& g, std::int64_t f0, std::int64_t f1) {
  const auto coords = dr::sequence_coords(g);
  std::vector<std::int64_t> pos0(static_cast<std::size_t>(g.height * g.width), -1), pos1 = pos0;
  for (std::size_t p = 0; p < coords.size(); ++p) {
    if (coords[p].text) continue;
    const std::int64_t s = dr::spatial_index(g, coords[p]);
    if (coords[p].frame == f0) pos0[s] = static_cast<std::int64_t>(p);
    if (coords[p].frame == f1) pos1[s] = static_cast<std::int64_t>(p);
  }
  double total = 0.0;
  std::int64_t n = 0;
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t h = 0; h < g.heads; ++h)
      for (std::size_t s = 0; s < pos0.size(); ++s) {
        double dot = 0.0, n0 = 0.0, n1 = 0.0;
        for (std::int64_t d = 0; d < g.head_dim; ++d) {
          const double a = k.get(k.index(b, pos0[s], h, d)), c = k.get(k.index(b, pos1[s], h, d));
          dot += a * c;
          n0 += a * a;
          n1 += c * c;
        }
        total += dot / std::sqrt(n0 * n1);
        ++n;
      }
  return total / static_cast<double>(n);
}

}  // namespace

TEST(Synthetic, ShapesAndFiniteValues) {
  dr::VideoGeometry g = video();
  g.text_tokens = 7;
  g.text_placement = dr::TextPlacement::prefix;
  const dr::SyntheticQkv x = dr::make_synthetic_qkv(g, dr::SyntheticOptions{});
  const dr::Shape want = dr_test::make_shape(2, dr::total_tokens(g), 2, 32);
  for (const dr::HostTensor* t : {&x.q, &x.k, &x.v}) {
    EXPECT_EQ(t->shape(), want) << dr::to_string(t->shape());
    EXPECT_EQ(t->dtype(), dr::DType::f32);
    double sumsq = 0.0;
    for (std::int64_t i = 0; i < want.elements(); ++i) {
      const float v = t->get(i);
      ASSERT_TRUE(std::isfinite(v)) << "element " << i;
      sumsq += static_cast<double>(v) * v;
    }
    EXPECT_GT(sumsq, 0.0) << "tensor is all zero";
  }
}

TEST(Synthetic, DeterministicFromSeed) {
  const dr::VideoGeometry g = video(5);
  dr::SyntheticOptions o;
  o.seed = 42;
  const dr::SyntheticQkv a = dr::make_synthetic_qkv(g, o);
  const dr::SyntheticQkv b = dr::make_synthetic_qkv(g, o);
  EXPECT_TRUE(same_bits(a.q, b.q));
  EXPECT_TRUE(same_bits(a.k, b.k));
  EXPECT_TRUE(same_bits(a.v, b.v));
  o.seed = 43;
  const dr::SyntheticQkv c = dr::make_synthetic_qkv(g, o);
  EXPECT_FALSE(same_bits(a.q, c.q));
  EXPECT_FALSE(same_bits(a.k, c.k));
  EXPECT_FALSE(same_bits(a.v, c.v));
  // Q, K and V are not copies of each other.
  EXPECT_FALSE(same_bits(a.q, a.k));
  EXPECT_FALSE(same_bits(a.k, a.v));
}

TEST(Synthetic, DtypeHonoured) {
  const dr::VideoGeometry g = video(3);
  for (dr::DType dt : {dr::DType::f16, dr::DType::bf16, dr::DType::f32}) {
    dr::SyntheticOptions o;
    o.dtype = dt;
    const dr::SyntheticQkv x = dr::make_synthetic_qkv(g, o);
    for (const dr::HostTensor* t : {&x.q, &x.k, &x.v}) {
      EXPECT_EQ(t->dtype(), dt) << dr::to_string(dt);
      for (std::int64_t i = 0; i < t->shape().elements(); ++i) ASSERT_TRUE(std::isfinite(t->get(i)));
    }
    // Half-precision output carries the same content as f32, to the format's precision.
    dr::SyntheticOptions o32 = o;
    o32.dtype = dr::DType::f32;
    const dr::SyntheticQkv ref = dr::make_synthetic_qkv(g, o32);
    const double rtol = dt == dr::DType::bf16 ? 1.0 / 128 : 1.0 / 1024;
    int bad = 0;
    for (std::int64_t i = 0; i < ref.k.shape().elements(); ++i) {
      const double want = ref.k.get(i), got = x.k.get(i);
      if (std::fabs(got - want) > rtol * std::fabs(want) + 1e-6 && bad++ < 3)
        ADD_FAILURE() << dr::to_string(dt) << " k[" << i << "] = " << got << ", f32 gives " << want;
    }
  }
}

TEST(Synthetic, HigherDriftDecorrelatesFramesFaster) {
  const dr::VideoGeometry g = video(8);
  dr::SyntheticOptions low, high;
  low.drift = dr::regime_drift(dr::MotionRegime::low);
  high.drift = dr::regime_drift(dr::MotionRegime::high);
  EXPECT_DOUBLE_EQ(low.drift, 0.02);
  EXPECT_DOUBLE_EQ(high.drift, 0.40);
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    low.seed = high.seed = seed;
    const dr::SyntheticQkv a = dr::make_synthetic_qkv(g, low);
    const dr::SyntheticQkv b = dr::make_synthetic_qkv(g, high);
    const double c_low = frame_cosine(a.k, g, 0, 7);
    const double c_high = frame_cosine(b.k, g, 0, 7);
    EXPECT_GT(c_low, c_high + 0.1) << "seed " << seed << ": drift 0.02 cos " << c_low << ", drift 0.4 cos " << c_high;
    // Neighbouring frames stay closer than distant ones.
    EXPECT_GT(frame_cosine(b.k, g, 0, 1), c_high) << "seed " << seed;
  }
}

TEST(Synthetic, FeaturesAreSpatiallySmooth) {
  // Adjacent tokens of a frame are more alike than tokens far apart (coarse grid, interpolated).
  dr::VideoGeometry g = video(1);
  g.height = 16;
  g.width = 16;
  dr::SyntheticOptions o;
  o.grid_spacing = 4.0;
  const dr::SyntheticQkv x = dr::make_synthetic_qkv(g, o);
  auto cosine = [&](std::int64_t t0, std::int64_t t1) {
    double total = 0.0;
    for (std::int64_t h = 0; h < g.heads; ++h) {
      double dot = 0.0, n0 = 0.0, n1 = 0.0;
      for (std::int64_t d = 0; d < g.head_dim; ++d) {
        const double a = x.k.get(x.k.index(0, t0, h, d)), c = x.k.get(x.k.index(0, t1, h, d));
        dot += a * c, n0 += a * a, n1 += c * c;
      }
      total += dot / std::sqrt(n0 * n1);
    }
    return total / static_cast<double>(g.heads);
  };
  double near = 0.0, far = 0.0;
  int n = 0;
  for (std::int64_t y = 0; y < 8; ++y)
    for (std::int64_t xx = 0; xx < 7; ++xx) {
      near += cosine(y * 16 + xx, y * 16 + xx + 1);
      far += cosine(y * 16 + xx, (y + 8) * 16 + xx + 8);
      ++n;
    }
  EXPECT_GT(near / n, far / n + 0.2);
}

TEST(Synthetic, SameSceneInEveryTokenOrder) {
  // The generator describes a video; the tiled order only permutes its tokens.
  dr::VideoGeometry raster = video(4);
  raster.height = 16;
  raster.width = 16;
  raster.text_tokens = 5;
  raster.text_placement = dr::TextPlacement::suffix;
  dr::VideoGeometry tiled = raster;
  tiled.order = dr::TokenOrder::tiled3d;
  dr::SyntheticOptions o;
  o.seed = 9;
  const dr::SyntheticQkv a = dr::make_synthetic_qkv(raster, o);
  const dr::SyntheticQkv b = dr::make_synthetic_qkv(tiled, o);
  const auto perm = dr::token_permutation(tiled);
  int bad = 0;
  for (std::int64_t bt = 0; bt < raster.batch; ++bt)
    for (std::int64_t p = 0; p < static_cast<std::int64_t>(perm.size()); ++p)
      for (std::int64_t h = 0; h < raster.heads; ++h)
        for (std::int64_t d = 0; d < raster.head_dim; ++d)
          if (b.k.get(b.k.index(bt, p, h, d)) != a.k.get(a.k.index(bt, perm[p], h, d)) && bad++ < 3)
            ADD_FAILURE() << "tiled k at position " << p << " differs from raster k at " << perm[p];
}
