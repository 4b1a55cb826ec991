// The motion-drift proxy of PAPER.md part 3 as synthetic Q/K/V.
//
// Per (batch, head) a coarse grid of random feature vectors (one every `spacing` tokens) evolves
// frame to frame as x_t = (1 - a) x_{t-1} + a * noise. A token's feature is the bilinear
// interpolation of its frame's grid, scaled to unit RMS. K is the feature plus a little noise, Q the
// feature (plus its own noise) times a gain that sets how peaked softmax rows are, V an independent
// field of the same kind. Heads differ in grid spacing (0.5x, 1x, 2x the option) like the local and
// global heads of real models.
#include "dynamicrad/synthetic.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/parallel.h"

namespace dynamicrad {

namespace {

// splitmix64: a small, well-mixed generator; one stream per (tensor, batch, head) keeps the output
// independent of thread scheduling.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-sqrt(3), sqrt(3)): zero mean, unit variance; two values per 64 random bits.
  float uniform_unit_variance() {
    constexpr float kSqrt3 = 1.7320508f;
    if (spare_words_ == 0) {
      bits_ = next();
      spare_words_ = 2;
    }
    const auto word = static_cast<std::uint32_t>(bits_ >> (32 * --spare_words_));
    const float u = static_cast<float>(word >> 8) * (1.0f / 16777216.0f);
    return (2.0f * u - 1.0f) * kSqrt3;
  }
  float normal() {
    constexpr double kTwoPi = 6.283185307179586;
    const double u1 = (static_cast<double>(next() >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    const double u2 = static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2));
  }

 private:
  std::uint64_t state_;
  std::uint64_t bits_ = 0;
  int spare_words_ = 0;
};

std::uint64_t stream_seed(std::uint64_t seed, std::uint64_t tensor, std::uint64_t b, std::uint64_t h) {
  return Rng(seed ^ (tensor * 0x100000001b3ull) ^ (b << 20) ^ (h << 40)).next();
}

// One evolving coarse grid.
class DriftField {
 public:
  DriftField(const VideoGeometry& g, double spacing, std::int64_t dim, double drift, std::uint64_t seed)
      : spacing_(spacing), dim_(dim), drift_(static_cast<float>(drift)), rng_(seed) {
    gy_ = static_cast<std::int64_t>(std::ceil(static_cast<double>(g.height - 1) / spacing)) + 2;
    gx_ = static_cast<std::int64_t>(std::ceil(static_cast<double>(g.width - 1) / spacing)) + 2;
    grid_.resize(static_cast<std::size_t>(gy_ * gx_ * dim_));
    for (float& v : grid_) v = rng_.normal();
  }

  // Advances one frame: x_t = (1 - a) x_{t-1} + a * noise.
  void step() {
    for (float& v : grid_) v = (1.0f - drift_) * v + drift_ * rng_.normal();
  }

  // Unit-RMS feature of token (y, x) into out[dim].
  void feature(std::int64_t y, std::int64_t x, float* out) const {
    const double fy = static_cast<double>(y) / spacing_, fx = static_cast<double>(x) / spacing_;
    const auto y0 = static_cast<std::int64_t>(fy), x0 = static_cast<std::int64_t>(fx);
    const auto wy = static_cast<float>(fy - static_cast<double>(y0));
    const auto wx = static_cast<float>(fx - static_cast<double>(x0));
    const float* a = cell(y0, x0);
    const float* b = cell(y0, x0 + 1);
    const float* c = cell(y0 + 1, x0);
    const float* d = cell(y0 + 1, x0 + 1);
    float sum_sq = 0.0f;
    for (std::int64_t i = 0; i < dim_; ++i) {
      const float top = a[i] + wx * (b[i] - a[i]);
      const float bottom = c[i] + wx * (d[i] - c[i]);
      out[i] = top + wy * (bottom - top);
      sum_sq += out[i] * out[i];
    }
    const float scale = sum_sq > 0.0f ? std::sqrt(static_cast<float>(dim_) / sum_sq) : 0.0f;
    for (std::int64_t i = 0; i < dim_; ++i) out[i] *= scale;
  }

 private:
  const float* cell(std::int64_t y, std::int64_t x) const { return grid_.data() + (y * gx_ + x) * dim_; }

  double spacing_;
  std::int64_t dim_;
  float drift_;
  Rng rng_;
  std::int64_t gy_ = 0, gx_ = 0;
  std::vector<float> grid_;
};

// Writes row[0 .. size) at element `index` of t, converting to its dtype.
void store_row(const MutableTensor& t, std::int64_t index, const std::vector<float>& row) {
  switch (t.dtype) {
    case DType::f32:
      std::copy(row.begin(), row.end(), static_cast<float*>(t.data) + index);
      return;
    case DType::f16:
      for (std::size_t i = 0; i < row.size(); ++i) static_cast<std::uint16_t*>(t.data)[index + i] = float_to_half(row[i]);
      return;
    case DType::bf16:
      for (std::size_t i = 0; i < row.size(); ++i) static_cast<std::uint16_t*>(t.data)[index + i] = float_to_bfloat16(row[i]);
      return;
  }
}

}  // namespace

SyntheticQkv make_synthetic_qkv(const VideoGeometry& g, const SyntheticOptions& o) {
  validate(g);
  detail::require(o.drift > 0.0 && o.drift <= 1.0, "synthetic.drift",
                  std::to_string(o.drift) + ": allowed range (0, 1]");
  detail::require(o.sharpness > 0.0 && o.sharpness <= 100.0, "synthetic.sharpness",
                  std::to_string(o.sharpness) + ": allowed range (0, 100]");
  detail::require(o.grid_spacing >= 1.0 && o.grid_spacing <= 1e6, "synthetic.grid_spacing",
                  std::to_string(o.grid_spacing) + ": allowed range [1, 1e6]");
  const Shape shape{g.batch, total_tokens(g), g.heads, g.head_dim};
  SyntheticQkv out{HostTensor(o.dtype, shape), HostTensor(o.dtype, shape), HostTensor(o.dtype, shape)};
  const std::vector<std::int64_t> position = inverse_permutation(token_permutation(g));
  const std::int64_t vb = video_begin(g);
  const std::int64_t dim = g.head_dim;
  // Peak logit about 4 * sharpness for a key equal to the query's feature.
  const float q_gain = static_cast<float>(4.0 * o.sharpness / std::sqrt(static_cast<double>(dim)));
  constexpr float kKeyNoise = 0.3f;
  constexpr float kQueryNoise = 0.3f;
  constexpr double kHeadSpacing[] = {0.5, 1.0, 2.0};

  const MutableTensor q_view = out.q.mutable_view(), k_view = out.k.mutable_view(), v_view = out.v.mutable_view();
  detail::parallel_for(g.batch * g.heads, detail::resolve_threads(0), [&](std::int64_t task, int) {
    const std::int64_t b = task / g.heads, h = task % g.heads;
    const double spacing = std::max(1.0, o.grid_spacing * kHeadSpacing[h % 3]);
    DriftField qk_field(g, spacing, dim, o.drift, stream_seed(o.seed, 1, b, h));
    DriftField v_field(g, spacing, dim, o.drift, stream_seed(o.seed, 2, b, h));
    Rng noise(stream_seed(o.seed, 3, b, h));
    std::vector<float> f(static_cast<std::size_t>(dim)), fv(f), fq(f);
    for (std::int64_t t = 0; t < g.frames; ++t) {
      if (t > 0) {
        qk_field.step();
        v_field.step();
      }
      for (std::int64_t y = 0; y < g.height; ++y) {
        for (std::int64_t x = 0; x < g.width; ++x) {
          qk_field.feature(y, x, f.data());
          v_field.feature(y, x, fv.data());
          const std::int64_t native = vb + (t * g.height + y) * g.width + x;
          const std::int64_t tok = position[native];
          for (std::int64_t i = 0; i < dim; ++i) {
            fq[i] = q_gain * (f[i] + kQueryNoise * noise.uniform_unit_variance());
            f[i] += kKeyNoise * noise.uniform_unit_variance();
          }
          const std::int64_t index = out.q.index(b, tok, h, 0);
          store_row(q_view, index, fq);
          store_row(k_view, index, f);
          store_row(v_view, index, fv);
        }
      }
    }
    // Text tokens: independent unit-variance noise (prompts are unrelated to pixel positions).
    for (std::int64_t native = 0; native < total_tokens(g); ++native) {
      if (native >= vb && native < vb + video_tokens(g)) continue;
      const std::int64_t tok = position[native];
      for (std::int64_t i = 0; i < dim; ++i) {
        fq[i] = q_gain * noise.uniform_unit_variance();
        f[i] = noise.uniform_unit_variance();
        fv[i] = noise.uniform_unit_variance();
      }
      const std::int64_t index = out.q.index(b, tok, h, 0);
      store_row(q_view, index, fq);
      store_row(k_view, index, f);
      store_row(v_view, index, fv);
    }
  });
  return out;
}

}  // namespace dynamicrad
