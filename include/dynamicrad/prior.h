// Radial locality prior: the candidate set of key blocks for every query block (PAPER.md part 1).
//
// Token-level definition. For a query video token (frame i, spatial index s) and a key video token
// (frame j, spatial index s'), with P = tokens per frame, B = block size and d = |i - j|:
//   1. dense    when d == 0, or j == 0 and first_frame_sink, or d == 1 and dense_adjacent;
//   2. otherwise the band half-width is w(d) = 2^ceil(log2 P) * gamma / 2^bitlen(d)
//      (bitlen(d) = floor(log2 d) + 1):
//      near frame distance, w(d) >= B:  keep when |s - s'| <= w(d);
//      far frame distance,  w(d) <  B:  k(d) = max(1, floor(B / (lambda * w(d))));
//                                       keep when d % k(d) == 0 and |s - s'| <= B
//      (a thin block-wide diagonal on every k-th frame distance; a larger lambda keeps fewer).
// Text tokens: every pair with a text query or text key is dense.
//
// Block-level reduction, computed per block from its token runs (never through a token mask).
// For query block R and key block C:
//   * forced    when R x C holds at least one dense pair (rule 1 or text): always kept by selection;
//   * candidate when not forced and, with kept(c) = #{r in R : pair (r, c) kept} for each key c in C,
//     high(c) = kept(c) > theta_c * |R| and nonzero(c) = kept(c) > 0:
//       #high > theta_m * #nonzero  and  #nonzero > 0;
//   * otherwise skipped.
// A candidate is near when w(d_min) >= B, with d_min the smallest frame distance between the two
// blocks' frames, and far otherwise; static-ratio and dynamic-threshold treat the two groups apart.
#pragma once

#include <cstdint>
#include <vector>

#include "dynamicrad/geometry.h"

namespace dynamicrad {

struct RadialPriorParams {
  double gamma = 1.0;           // decay factor: (0, 16]
  double lambda = 1.0;          // long factor: [1/16, 16]
  double theta_m = 0.6;         // share of high-density columns needed: [0, 1)
  double theta_c = 1.0 / 3.0;   // column density that counts as high: [0, 1)
  bool dense_adjacent = false;  // frame distance 1 always dense
  bool first_frame_sink = true; // keys of frame 0 always dense (Wan's attention sink)
};

// Throws Error naming the field and its allowed range.
void validate(const RadialPriorParams& params);

enum class BlockKind : std::uint8_t { forced, near, far };

// Band half-width w(d) of the token-level rule (d >= 1).
double band_half_width(std::int64_t tokens_per_frame, double gamma, std::int64_t frame_distance);

// The candidate set. Head independent: one prior serves every batch element and head.
struct RadialPrior {
  VideoGeometry geometry;
  RadialPriorParams params;
  std::int64_t blocks = 0;                 // query blocks == key blocks
  std::vector<std::int64_t> row_offsets;   // [blocks + 1]
  std::vector<std::int32_t> col_indices;   // ascending within each row
  std::vector<BlockKind> kinds;            // parallel to col_indices
  std::vector<std::int32_t> frame_lo;      // [blocks]: smallest video frame of each block, -1 if none
  std::vector<std::int32_t> frame_hi;      // [blocks]: largest video frame of each block, -1 if none
  // The distinct video frames of block b, ascending: frames[frame_offsets[b] .. frame_offsets[b + 1]).
  // Not always a range: in the 3D-tiled order a block where full tiles end and partial tiles begin
  // can hold frames 6, 7 and 0, 1.
  std::vector<std::int64_t> frame_offsets;  // [blocks + 1]
  std::vector<std::int32_t> frames;

  std::int64_t count(BlockKind kind) const;
  std::int64_t size() const { return static_cast<std::int64_t>(col_indices.size()); }
  // Kept block pairs / blocks^2.
  double density() const;
};

// Builds the prior for a validated geometry. Cost: O(blocks^2) frame-range checks plus
// O(block_size * runs) for block pairs that cross a band edge; memory O(kept blocks). Rows are
// classified on `threads` threads (0: every hardware thread); the result does not depend on it.
RadialPrior build_radial_prior(const VideoGeometry& geometry, const RadialPriorParams& params, int threads = 1);

// Smallest |i - j| over the frames i of q_block and j of k_block, -1 when either holds no video token.
std::int64_t block_frame_distance(const RadialPrior& prior, std::int64_t q_block, std::int64_t k_block);

}  // namespace dynamicrad
