// Shared helpers for the tests of block means (pool_blocks, PooledPrefix, the rotary's pooled
// output): a prefix cut from pooled means, and pool_blocks()' arithmetic written out.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dynamicrad/select.h"
#include "dynamicrad/tensor.h"

namespace dr_test {

// The first `blocks` block means of every (batch, head) of a PooledBlocks, laid out as a PooledPrefix
// reads them: [batch, heads, blocks, head_dim]; block_size: the tokens each mean was taken over.
struct PrefixArrays {
  std::vector<float> q, k;
  std::int64_t blocks = 0;
  int block_size = 0;
  dynamicrad::PooledPrefix view() const { return dynamicrad::PooledPrefix{q.data(), k.data(), blocks, block_size}; }
};

inline PrefixArrays prefix_of(const dynamicrad::PooledBlocks& p, std::int64_t blocks, int block_size) {
  PrefixArrays a;
  a.blocks = blocks;
  a.block_size = block_size;
  for (std::int64_t bh = 0; bh < p.batch * p.heads; ++bh)
    for (std::int64_t blk = 0; blk < blocks; ++blk)
      for (std::int64_t d = 0; d < p.head_dim; ++d) {
        const std::size_t i = static_cast<std::size_t>((bh * p.blocks + blk) * p.head_dim + d);
        a.q.push_back(p.q[i]);
        a.k.push_back(p.k[i]);
      }
  return a;
}

// pool_blocks()' arithmetic written out: for every (b, h, blk < blocks, d) the float sum of out's
// values (read as float) in ascending token order, times 1.0f / the block's tokens;
// [batch, heads, blocks, head_dim].
inline std::vector<float> sequential_means(const dynamicrad::HostTensor& out, int pool_block, std::int64_t blocks) {
  const dynamicrad::Shape& s = out.shape();
  std::vector<float> means;
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads; ++h)
      for (std::int64_t blk = 0; blk < blocks; ++blk)
        for (std::int64_t d = 0; d < s.head_dim; ++d) {
          const std::int64_t t0 = blk * pool_block, t1 = std::min<std::int64_t>(s.tokens, t0 + pool_block);
          float sum = 0.0f;
          for (std::int64_t t = t0; t < t1; ++t) sum += out.get(out.index(b, t, h, d));
          means.push_back(sum * (1.0f / static_cast<float>(t1 - t0)));
        }
  return means;
}

}  // namespace dr_test
