// 3D rotary position encoding (rope.h).
#include "dynamicrad/rope.h"

#include <cmath>
#include <string>

#include "dynamicrad/error.h"

namespace dynamicrad {
namespace {

// Rotates the n elements of one band (n even) by position * omega_j per pair.
void rotate_band(float* x, std::int64_t n, double position, double theta) {
  for (std::int64_t j = 0; j < n / 2; ++j) {
    const double omega = std::pow(theta, -2.0 * static_cast<double>(j) / static_cast<double>(n));
    const double angle = position * omega;
    const double c = std::cos(angle), s = std::sin(angle);
    const double a = x[2 * j], b = x[2 * j + 1];
    x[2 * j] = static_cast<float>(a * c - b * s);
    x[2 * j + 1] = static_cast<float>(a * s + b * c);
  }
}

}  // namespace

RopeBands rope_bands(std::int64_t head_dim) {
  if (head_dim < 2 || head_dim % 2 != 0) {
    throw Error("rope.head_dim", std::to_string(head_dim) + ": allowed values are even and >= 2");
  }
  RopeBands bands;
  bands.height = 2 * (head_dim / 6);
  bands.width = bands.height;
  bands.time = head_dim - 4 * (head_dim / 6);
  return bands;
}

void apply_rope_3d(float* x, std::int64_t head_dim, const RopePosition& p, double theta) {
  const RopeBands bands = rope_bands(head_dim);
  rotate_band(x, bands.time, p.t, theta);
  rotate_band(x + bands.time, bands.height, p.y, theta);
  rotate_band(x + bands.time + bands.height, bands.width, p.x, theta);
}

}  // namespace dynamicrad
