// The proxy task's Q/K/V (proxy.h).
//
// Physics scene features. A token's scene feature (kFeatureDim channels, unit RMS) is
//   background: a periodic coarse grid of random vectors (one every min(height, width) / 5 tokens)
//               sampled bilinearly at the token's world position (its frame position plus the
//               camera offset), evolving as x_t = (1 - a) x_{t-1} + a * noise (a = appearance
//               drift);
//   objects:    each object has a base vector plus a 4 x 4 texture grid over its disc, sampled at
//               the token's position relative to the object centre (so the texture moves with
//               the object) and drifting like the background; objects are composited in order
//               with a soft edge.
// Head h projects the feature with random matrices Wk, Wv (Gaussian / sqrt(kFeatureDim)):
//   k = rho_h * c_h + (1 - rho_h) * Wk f + key noise,   q = gain * (same with query noise),
//   v = Wv f + value noise,
// where c_h is a fixed random vector: after RoPE, c_h . R(p' - p) c_h peaks at p' = p, so rho_h sets
// how positional (local) the head is. RoPE is applied to q and k last.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/parallel.h"
#include "dynamicrad/error.h"
#include "dynamicrad/proxy.h"
#include "dynamicrad/rope.h"
#include "core/number_text.h"
#include "tune/random.h"

namespace dynamicrad {
namespace {

constexpr std::int64_t kFeatureDim = 32;      // scene feature channels
constexpr double kBackgroundCells = 5.0;      // background grid points across the frame's short side
constexpr std::int64_t kWorldCells = 24;      // background grid period (cells a side)
constexpr std::int64_t kObjectGrid = 4;       // object texture grid points a side
constexpr double kObjectTexture = 0.7;        // texture amplitude relative to the object's base vector
constexpr double kEdgeShare = 0.15;           // soft edge width as a share of the radius (>= 1 token)
constexpr float kKeyNoise = 0.3f;             // per-token noise on K, Q and V features
constexpr float kQueryNoise = 0.3f;
constexpr float kValueNoise = 0.3f;
// Positional weight rho_h of head h % 4: from mostly content (0.2) to mostly local (0.7).
constexpr double kHeadLocality[] = {0.35, 0.55, 0.2, 0.7};

// A grid of random feature vectors that drifts frame to frame.
class FeatureGrid {
 public:
  FeatureGrid(std::int64_t rows, std::int64_t cols, detail::SplitMix& rng)
      : rows_(rows), cols_(cols), values_(static_cast<std::size_t>(rows * cols * kFeatureDim)) {
    for (double& v : values_) v = rng.normal();
  }

  void drift(double a, detail::SplitMix& rng) {
    if (a <= 0.0) return;
    for (double& v : values_) v = (1.0 - a) * v + a * rng.normal();
  }

  // Bilinear sample at grid coordinates (gy, gx): periodic when `wrap`, clamped otherwise; adds
  // weight * value into out[kFeatureDim].
  void sample(double gy, double gx, bool wrap, double weight, double* out) const {
    const double fy = std::floor(gy), fx = std::floor(gx);
    const double wy = gy - fy, wx = gx - fx;
    const auto y0 = static_cast<std::int64_t>(fy), x0 = static_cast<std::int64_t>(fx);
    const double w[4] = {(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx};
    const std::int64_t ys[4] = {y0, y0, y0 + 1, y0 + 1};
    const std::int64_t xs[4] = {x0, x0 + 1, x0, x0 + 1};
    for (int c = 0; c < 4; ++c) {
      const double* cell = at(ys[c], xs[c], wrap);
      for (std::int64_t i = 0; i < kFeatureDim; ++i) out[i] += weight * w[c] * cell[i];
    }
  }

 private:
  const double* at(std::int64_t y, std::int64_t x, bool wrap) const {
    if (wrap) {
      y = ((y % rows_) + rows_) % rows_;
      x = ((x % cols_) + cols_) % cols_;
    } else {
      y = std::clamp<std::int64_t>(y, 0, rows_ - 1);
      x = std::clamp<std::int64_t>(x, 0, cols_ - 1);
    }
    return values_.data() + (y * cols_ + x) * kFeatureDim;
  }

  std::int64_t rows_, cols_;
  std::vector<double> values_;
};

// Scene features of one batch element: [frames * height * width, kFeatureDim], raster order.
std::vector<float> scene_features(const VideoGeometry& g, const PhysicsSceneOptions& scene) {
  const SceneTrajectory path = simulate_scene(g, scene);
  detail::SplitMix rng(detail::derive_seed(scene.seed, 12));
  const double spacing =
      std::max(1.5, static_cast<double>(std::min(g.height, g.width)) / kBackgroundCells);
  FeatureGrid background(kWorldCells, kWorldCells, rng);
  std::vector<FeatureGrid> textures;
  std::vector<std::vector<double>> bases;
  for (int i = 0; i < scene.objects; ++i) {
    textures.emplace_back(kObjectGrid, kObjectGrid, rng);
    std::vector<double> base(kFeatureDim);
    for (double& v : base) v = rng.normal();
    bases.push_back(std::move(base));
  }

  const std::int64_t per_frame = g.height * g.width;
  std::vector<float> out(static_cast<std::size_t>(g.frames * per_frame * kFeatureDim));
  std::vector<double> f(kFeatureDim), o(kFeatureDim);
  for (std::int64_t t = 0; t < g.frames; ++t) {
    if (t > 0) {
      background.drift(scene.appearance_drift, rng);
      for (FeatureGrid& tex : textures) tex.drift(scene.appearance_drift, rng);
    }
    for (std::int64_t y = 0; y < g.height; ++y) {
      for (std::int64_t x = 0; x < g.width; ++x) {
        std::fill(f.begin(), f.end(), 0.0);
        background.sample((static_cast<double>(y) + path.camera_y[t]) / spacing,
                          (static_cast<double>(x) + path.camera_x[t]) / spacing, true, 1.0,
                          f.data());
        for (int i = 0; i < scene.objects; ++i) {
          const SceneObject& s = path.objects[t][i];
          const double dy = static_cast<double>(y) - s.y, dx = static_cast<double>(x) - s.x;
          const double dist = std::sqrt(dy * dy + dx * dx);
          const double edge = std::max(1.0, kEdgeShare * s.radius);
          const double alpha = std::clamp((s.radius - dist) / edge + 0.5, 0.0, 1.0);
          if (alpha <= 0.0) continue;
          std::copy(bases[i].begin(), bases[i].end(), o.begin());
          // Local texture coordinates: the disc [-r, r]^2 maps onto the grid [0, kObjectGrid - 1]^2.
          const double scale = static_cast<double>(kObjectGrid - 1) / (2.0 * s.radius);
          textures[i].sample((dy + s.radius) * scale, (dx + s.radius) * scale, false,
                             kObjectTexture, o.data());
          for (std::int64_t c = 0; c < kFeatureDim; ++c) f[c] = (1.0 - alpha) * f[c] + alpha * o[c];
        }
        double sum_sq = 0.0;
        for (double v : f) sum_sq += v * v;
        const double norm = sum_sq > 0.0 ? std::sqrt(static_cast<double>(kFeatureDim) / sum_sq) : 0.0;
        float* dst = out.data() + ((t * g.height + y) * g.width + x) * kFeatureDim;
        for (std::int64_t c = 0; c < kFeatureDim; ++c) dst[c] = static_cast<float>(f[c] * norm);
      }
    }
  }
  return out;
}

// A head's random projections and positional vector.
struct HeadProjection {
  std::vector<float> wk, wv;  // [head_dim, kFeatureDim]
  std::vector<float> position;  // [head_dim]
  double rho = 0.0;

  HeadProjection(std::int64_t dim, std::int64_t head, std::uint64_t seed)
      : wk(static_cast<std::size_t>(dim * kFeatureDim)), wv(wk.size()),
        position(static_cast<std::size_t>(dim)), rho(kHeadLocality[head % 4]) {
    detail::SplitMix rng(detail::derive_seed(seed, 13, static_cast<std::uint64_t>(head)));
    const double s = 1.0 / std::sqrt(static_cast<double>(kFeatureDim));
    for (float& w : wk) w = static_cast<float>(s * rng.normal());
    for (float& w : wv) w = static_cast<float>(s * rng.normal());
    for (float& p : position) p = static_cast<float>(rng.normal());
  }
};

void project(const std::vector<float>& w, const float* f, std::int64_t dim, float* out) {
  for (std::int64_t i = 0; i < dim; ++i) {
    const float* row = w.data() + i * kFeatureDim;
    float sum = 0.0f;
    for (std::int64_t c = 0; c < kFeatureDim; ++c) sum += row[c] * f[c];
    out[i] = sum;
  }
}

}  // namespace

std::string to_string(SceneKind kind) { return kind == SceneKind::drift ? "drift" : "physics"; }

SceneKind parse_scene_kind(const std::string& text, const std::string& field) {
  if (text == "drift") return SceneKind::drift;
  if (text == "physics") return SceneKind::physics;
  throw Error(field, "\"" + text + "\" is not a proxy scene: allowed values are drift, physics");
}

SyntheticQkv make_physics_qkv(const VideoGeometry& g, const PhysicsSceneOptions& scene,
                              double sharpness) {
  validate(g);
  validate(scene);
  detail::require(sharpness > 0.0 && sharpness <= 100.0, "proxy.sharpness",
                  detail::shortest_text(sharpness) + ": allowed range (0, 100]");
  rope_bands(g.head_dim);  // checks that head_dim is even
  const Shape shape{g.batch, total_tokens(g), g.heads, g.head_dim};
  SyntheticQkv out{HostTensor(DType::f32, shape), HostTensor(DType::f32, shape),
                   HostTensor(DType::f32, shape)};
  const std::vector<std::int64_t> position = inverse_permutation(token_permutation(g));
  const std::int64_t vb = video_begin(g), dim = g.head_dim, video = video_tokens(g);
  // Peak logit about 4 * sharpness for a key equal to the query (as in synthetic.cpp).
  const auto q_gain = static_cast<float>(4.0 * sharpness / std::sqrt(static_cast<double>(dim)));
  auto* q_data = static_cast<float*>(out.q.mutable_view().data);
  auto* k_data = static_cast<float*>(out.k.mutable_view().data);
  auto* v_data = static_cast<float*>(out.v.mutable_view().data);

  for (std::int64_t b = 0; b < g.batch; ++b) {
    PhysicsSceneOptions element = scene;
    element.seed = detail::derive_seed(scene.seed, 14, static_cast<std::uint64_t>(b));
    const std::vector<float> features = scene_features(g, element);
    detail::parallel_for(g.heads, detail::resolve_threads(0), [&](std::int64_t h, int) {
      const HeadProjection proj(dim, h, element.seed);
      detail::SplitMix noise(detail::derive_seed(element.seed, 15, static_cast<std::uint64_t>(h)));
      std::vector<float> content(static_cast<std::size_t>(dim)), qk(content);
      const auto rho = static_cast<float>(proj.rho);
      for (std::int64_t native = 0; native < video; ++native) {
        const std::int64_t t = native / (g.height * g.width);
        const std::int64_t y = (native / g.width) % g.height, x = native % g.width;
        const float* f = features.data() + native * kFeatureDim;
        const std::int64_t base = out.q.index(b, position[vb + native], h, 0);
        const RopePosition at{static_cast<double>(t), static_cast<double>(y), static_cast<double>(x)};
        project(proj.wk, f, dim, content.data());
        for (std::int64_t i = 0; i < dim; ++i) {
          qk[i] = rho * proj.position[i] + (1.0f - rho) * content[i];
          k_data[base + i] = qk[i] + kKeyNoise * static_cast<float>(noise.normal());
          q_data[base + i] = q_gain * (qk[i] + kQueryNoise * static_cast<float>(noise.normal()));
        }
        apply_rope_3d(k_data + base, dim, at);
        apply_rope_3d(q_data + base, dim, at);
        project(proj.wv, f, dim, v_data + base);
        for (std::int64_t i = 0; i < dim; ++i) {
          v_data[base + i] += kValueNoise * static_cast<float>(noise.normal());
        }
      }
      for (std::int64_t native = 0; native < total_tokens(g); ++native) {
        if (native >= vb && native < vb + video) continue;
        const std::int64_t base = out.q.index(b, position[native], h, 0);
        for (std::int64_t i = 0; i < dim; ++i) {
          q_data[base + i] = q_gain * static_cast<float>(noise.normal());
          k_data[base + i] = static_cast<float>(noise.normal());
          v_data[base + i] = static_cast<float>(noise.normal());
        }
      }
    });
  }
  return out;
}

SyntheticQkv make_proxy_qkv(const VideoGeometry& g, const ProxyOptions& o) {
  constexpr double kDriftSharpness = 2.0;
  constexpr double kPhysicsSharpness = 6.0;
  if (o.kind == SceneKind::physics) {
    return make_physics_qkv(g, physics_scene_options(o.regime, o.seed),
                            o.sharpness > 0.0 ? o.sharpness : kPhysicsSharpness);
  }
  validate(g);
  SyntheticOptions s;
  s.drift = regime_drift(o.regime);
  s.seed = o.seed;
  s.sharpness = o.sharpness > 0.0 ? o.sharpness : kDriftSharpness;
  // The paper's drift proxy with its texture scaled to the frame (4 tokens at height 16), so that
  // a geometry twice as large shows the same content at twice the resolution.
  s.grid_spacing = std::max(1.0, static_cast<double>(std::min(g.height, g.width)) / 4.0);
  s.dtype = DType::f32;
  return make_synthetic_qkv(g, s);
}

}  // namespace dynamicrad
