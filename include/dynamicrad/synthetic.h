// Synthetic Q/K/V with the paper's motion proxy: per-frame features evolving as the auto-regressive
// drift x_t = (1 - a) x_{t-1} + a * noise (a = regime_drift()). Features are spatially smooth (a coarse
// grid of random vectors, bilinearly interpolated), so attention concentrates on nearby tokens of
// similar frames, and a larger drift decorrelates distant frames faster. Deterministic from the seed.
#pragma once

#include <cstdint>

#include "dynamicrad/geometry.h"
#include "dynamicrad/tensor.h"

namespace dynamicrad {

struct SyntheticOptions {
  double drift = 0.15;        // a in (0, 1]
  std::uint64_t seed = 1;
  double sharpness = 2.0;     // scales Q so that softmax rows are peaked, > 0
  double grid_spacing = 4.0;  // tokens between coarse-grid points, >= 1
  DType dtype = DType::f32;
};

struct SyntheticQkv {
  HostTensor q;  // [batch, tokens, heads, head_dim], in the geometry's sequence order
  HostTensor k;
  HostTensor v;
};

SyntheticQkv make_synthetic_qkv(const VideoGeometry& geometry, const SyntheticOptions& options);

}  // namespace dynamicrad
