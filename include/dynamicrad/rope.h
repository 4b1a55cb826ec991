// 3D rotary position encoding (RoPE) as Wan applies it to Q and K of its video tokens.
//
// The head dimension is cut into three bands of adjacent element pairs: time first, then height,
// then width. Wan's split gives height and width 2 * floor(d / 6) elements each and time the rest,
// d - 4 * floor(d / 6) (d = 128: 44 / 42 / 42). Inside a band of n elements, pair j (elements
// 2j, 2j + 1 of the band) is rotated by the angle p * omega_j with omega_j = theta^(-2j / n) and p the
// token's position on that axis (frame, row or column index). Rotations preserve norms, and
// rope(q, p) . rope(k, p') depends on the positions only through p' - p.
#pragma once

#include <cstdint>

namespace dynamicrad {

struct RopeBands {
  std::int64_t time = 0;    // elements of the time band (even)
  std::int64_t height = 0;  // elements of the height band (even)
  std::int64_t width = 0;   // elements of the width band (even)
};

// Wan's split of an even head_dim >= 2; throws Error("rope.head_dim", ...) otherwise.
RopeBands rope_bands(std::int64_t head_dim);

struct RopePosition {
  double t = 0.0;  // frame index
  double y = 0.0;  // row inside the frame
  double x = 0.0;  // column inside the frame
};

// Wan's base frequency.
inline constexpr double kRopeTheta = 10000.0;

// Rotates x[head_dim] in place for a token at `position`.
void apply_rope_3d(float* x, std::int64_t head_dim, const RopePosition& position,
                   double theta = kRopeTheta);

}  // namespace dynamicrad
