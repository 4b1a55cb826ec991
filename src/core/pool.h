// Block means with pool_blocks()' arithmetic (select.h), for the CPU code that needs them outside
// selection (apply_rotary's pooled output).
#pragma once

#include <cstdint>

#include "dynamicrad/tensor.h"

namespace dynamicrad::detail {

// out[b, h, blk, :] for blk in [first_block, end_block) = the mean of t's tokens
// [blk * block, min((blk + 1) * block, tokens)): float sums in ascending token order, times
// 1.0f / count. out is [batch, heads, out_blocks, head_dim]; other blocks are left as they are.
void pool_block_means(const ConstTensor& t, int block, std::int64_t first_block, std::int64_t end_block,
                      std::int64_t out_blocks, float* out);

}  // namespace dynamicrad::detail
