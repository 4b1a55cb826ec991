// Dual-mode selection inside the radial prior's candidate set (PAPER.md part 2), per batch element
// and head.
//
// Block scores. One pass over Q and K mean-pools every block: qbar(R), kbar(C) (the mean over the
// block's tokens, a short last block divided by its own size). The score of a block pair is
//   z(R, C) = qbar(R) . kbar(C) / sqrt(head_dim)
// in double, in the fixed order of block_score() (so every backend gets the same bits). Pooling sums
// tokens in ascending order in float, then multiplies by 1.0f / block tokens.
//
// static-ratio (speed first). In each query-block row, among the n near candidates keep the
// ceil(r_near * n) with the highest score, among the far ones ceil(r_far * n); ties go to the lower
// key block index. The budget depends only on the prior, never on content.
//
// dynamic-threshold (quality first). Each block of the prior row gets an estimated softmax mass
//   p(C) = |C| exp(z(R, C)) / sum over C' in the prior row of |C'| exp(z(R, C'))
// (|C| = tokens in key block C). A near candidate is kept when p(C) >= tau_near, a far one when
// p(C) >= tau_far.
//
// In both modes forced blocks are always kept, so no row is empty (the block pair (R, R) is always
// forced), and the result depends only on the inputs (deterministic, thread count independent).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dynamicrad/layout.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/tensor.h"

namespace dynamicrad {

enum class SelectionMode { static_ratio, dynamic_threshold };

struct SelectionParams {
  SelectionMode mode = SelectionMode::static_ratio;
  double r_near = 0.5;     // static-ratio: share of near candidates kept, [0, 1]
  double r_far = 0.25;     // static-ratio: share of far candidates kept, [0, 1]
  double tau_near = 0.002; // dynamic-threshold: estimated mass a near candidate needs, [0, 1]
  double tau_far = 0.004;  // dynamic-threshold: estimated mass a far candidate needs, [0, 1]
};

// Throws Error naming the field and its allowed range.
void validate(const SelectionParams& params);

std::string to_string(SelectionMode mode);
// "static-ratio", "dynamic-threshold"; throws Error(field, ...) otherwise.
SelectionMode parse_selection_mode(const std::string& text, const std::string& field = "mode");

// Mean-pooled Q and K per block.
struct PooledBlocks {
  std::int64_t batch = 0;
  std::int64_t heads = 0;
  std::int64_t blocks = 0;
  std::int64_t head_dim = 0;
  std::vector<float> q;  // [batch, heads, blocks, head_dim]
  std::vector<float> k;  // [batch, heads, blocks, head_dim]
};

// q, k: [batch, tokens, heads, head_dim] in the geometry's sequence order. Throws Error when the
// shapes disagree with the geometry or with each other, or when Q or K holds NaN or Inf (the message
// names the tensor and the first bad element).
PooledBlocks pool_blocks(const ConstTensor& q, const ConstTensor& k, const VideoGeometry& geometry);

// Block means of a call's first `blocks` blocks, computed before selection (apply_rotary's pooled
// output, which pools Q and K in the same pass that writes them): q, k float [batch, heads, blocks,
// head_dim], contiguous, in the memory of the device that selects. They must be what pooling q and
// k would give (pool_blocks' arithmetic); selection then pools only blocks [blocks, all blocks).
// blocks = 0: nothing computed before (q, k may be null). block_size: the tokens each mean was taken
// over, which must be the geometry's block size (means of other blocks would be read as these).
struct PooledPrefix {
  const float* q = nullptr;
  const float* k = nullptr;
  std::int64_t blocks = 0;
  int block_size = 0;
};

// Throws Error("pooled_blocks") unless 0 <= prefix.blocks <= blocks, and when prefix.blocks > 0,
// Error("pool_block") unless prefix.block_size == block_size, Error("pooled_q" / "pooled_k") for a
// null pointer (the values are checked where they are read).
void validate(const PooledPrefix& prefix, std::int64_t blocks, int block_size);

// pool_blocks() with the first prefix.blocks blocks copied from `prefix` (host memory). Throws Error
// naming "pooled_blocks" when prefix.blocks is outside [0, blocks of the geometry], "pooled_q" /
// "pooled_k" for a null pointer or a non-finite mean.
PooledBlocks pool_blocks(const ConstTensor& q, const ConstTensor& k, const VideoGeometry& geometry,
                         const PooledPrefix& prefix);

// z(R, C) for pooled means q_mean[head_dim], k_mean[head_dim]: eight double lanes (lane j sums
// elements j, j + 8, ... in ascending order), combined as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)),
// times scale.
double block_score(const float* q_mean, const float* k_mean, std::int64_t head_dim, double scale);

// Selects inside the prior for every (batch, head) of `pooled`.
BlockLayout select_blocks(const RadialPrior& prior, const PooledBlocks& pooled,
                          const SelectionParams& params);

}  // namespace dynamicrad
