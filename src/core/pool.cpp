// Mean pooling of Q and K per block: the one pass over Q and K that block scores need.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "core/check.h"
#include "core/pool.h"
#include "dynamicrad/select.h"

namespace dynamicrad {

namespace {

// Adds row `src` (head_dim elements of the tensor's dtype) to `acc`.
void accumulate_row(const void* src, DType dtype, std::int64_t n, float* acc) {
  switch (dtype) {
    case DType::f32: {
      const float* s = static_cast<const float*>(src);
      for (std::int64_t i = 0; i < n; ++i) acc[i] += s[i];
      break;
    }
    case DType::bf16: {
      const std::uint16_t* s = static_cast<const std::uint16_t*>(src);
      for (std::int64_t i = 0; i < n; ++i) {
        const std::uint32_t bits = static_cast<std::uint32_t>(s[i]) << 16;
        float f;
        std::memcpy(&f, &bits, 4);
        acc[i] += f;
      }
      break;
    }
    case DType::f16: {
      const std::uint16_t* s = static_cast<const std::uint16_t*>(src);
      for (std::int64_t i = 0; i < n; ++i) acc[i] += half_to_float(s[i]);
      break;
    }
  }
}

// Sums every block from `first_block` of `t` into out[batch, heads, blocks, head_dim], then divides
// by block sizes; the first blocks are copied from prefix [batch, heads, first_block, head_dim].
void pool_one(const ConstTensor& t, const VideoGeometry& g, const float* prefix, std::int64_t first_block,
              std::vector<float>& out) {
  const Shape& s = t.shape;
  const std::int64_t blocks = num_blocks(g);
  out.assign(static_cast<std::size_t>(s.batch * s.heads * blocks * s.head_dim), 0.0f);
  for (std::int64_t bh = 0; bh < s.batch * s.heads; ++bh) {
    const float* src = prefix + bh * first_block * s.head_dim;
    std::copy(src, src + first_block * s.head_dim, out.data() + bh * blocks * s.head_dim);
  }
  detail::pool_block_means(t, g.block_size, first_block, blocks, blocks, out.data());
}

// Pooled values are finite unless the input holds NaN / Inf or a sum overflowed: find out which.
void require_finite(const ConstTensor& t, const std::vector<float>& pooled, const std::string& name) {
  bool finite = true;
  for (float v : pooled) finite = finite && std::isfinite(v);
  if (finite) return;
  const Shape& s = t.shape;
  for (std::int64_t i = 0; i < s.elements(); ++i) {
    const float v = load_as_float(t.data, t.dtype, i);
    if (!std::isfinite(v)) {
      const std::int64_t d = i % s.head_dim;
      const std::int64_t h = (i / s.head_dim) % s.heads;
      const std::int64_t tok = (i / (s.head_dim * s.heads)) % s.tokens;
      const std::int64_t b = i / (s.head_dim * s.heads * s.tokens);
      throw Error(name, std::string(std::isnan(v) ? "NaN" : "Inf") + " at [batch " + std::to_string(b) +
                            ", token " + std::to_string(tok) + ", head " + std::to_string(h) +
                            ", dim " + std::to_string(d) + "]: inputs must be finite");
    }
  }
  throw Error(name, "a block mean overflows float: values are too large");
}

}  // namespace

void detail::pool_block_means(const ConstTensor& t, int block, std::int64_t first_block, std::int64_t end_block,
                              std::int64_t out_blocks, float* out) {
  const Shape& s = t.shape;
  const std::size_t elem = dtype_size(t.dtype);
  const auto* base = static_cast<const std::byte*>(t.data);
  for (std::int64_t blk = first_block; blk < end_block; ++blk) {
    for (std::int64_t bh = 0; bh < s.batch * s.heads; ++bh) {
      std::fill_n(out + (bh * out_blocks + blk) * s.head_dim, s.head_dim, 0.0f);
    }
  }
  const std::int64_t last = std::min<std::int64_t>(end_block * block, s.tokens);
  for (std::int64_t b = 0; b < s.batch; ++b) {
    for (std::int64_t tok = first_block * block; tok < last; ++tok) {
      const std::int64_t blk = tok / block;
      for (std::int64_t h = 0; h < s.heads; ++h) {
        const std::int64_t src_index = ((b * s.tokens + tok) * s.heads + h) * s.head_dim;
        float* acc = out + ((b * s.heads + h) * out_blocks + blk) * s.head_dim;
        accumulate_row(base + src_index * static_cast<std::int64_t>(elem), t.dtype, s.head_dim, acc);
      }
    }
  }
  for (std::int64_t blk = first_block; blk < end_block; ++blk) {
    const std::int64_t size = std::min<std::int64_t>(block, s.tokens - blk * block);
    const float inv = 1.0f / static_cast<float>(size);
    for (std::int64_t bh = 0; bh < s.batch * s.heads; ++bh) {
      float* acc = out + (bh * out_blocks + blk) * s.head_dim;
      for (std::int64_t i = 0; i < s.head_dim; ++i) acc[i] *= inv;
    }
  }
}

void validate(const PooledPrefix& prefix, std::int64_t blocks, int block_size) {
  detail::require(prefix.blocks >= 0 && prefix.blocks <= blocks, "pooled_blocks",
                  std::to_string(prefix.blocks) + ": allowed [0, " + std::to_string(blocks) + "] (the call's blocks)");
  if (prefix.blocks == 0) return;
  detail::require(prefix.block_size == block_size, "pool_block",
                  std::to_string(prefix.block_size) + ": the means must be over the geometry's blocks of " +
                      std::to_string(block_size) + " tokens");
  detail::require(prefix.q != nullptr, "pooled_q", "is null (pooled_blocks > 0)");
  detail::require(prefix.k != nullptr, "pooled_k", "is null (pooled_blocks > 0)");
}

PooledBlocks pool_blocks(const ConstTensor& q, const ConstTensor& k, const VideoGeometry& geometry) {
  return pool_blocks(q, k, geometry, PooledPrefix{});
}

PooledBlocks pool_blocks(const ConstTensor& q, const ConstTensor& k, const VideoGeometry& geometry,
                         const PooledPrefix& prefix) {
  validate(geometry);
  validate(prefix, num_blocks(geometry), geometry.block_size);
  const Shape expected{geometry.batch, total_tokens(geometry), geometry.heads, geometry.head_dim};
  detail::require_shape(q, expected, "q");
  detail::require_shape(k, expected, "k");
  detail::require(q.dtype == k.dtype, "k", "dtype " + to_string(k.dtype) + " differs from q's " +
                                               to_string(q.dtype));
  PooledBlocks pooled;
  pooled.batch = geometry.batch;
  pooled.heads = geometry.heads;
  pooled.blocks = num_blocks(geometry);
  pooled.head_dim = geometry.head_dim;
  const std::int64_t prefix_values = geometry.batch * geometry.heads * prefix.blocks * geometry.head_dim;
  for (const auto& [values, name] : {std::pair<const float*, const char*>{prefix.q, "pooled_q"}, {prefix.k, "pooled_k"}}) {
    for (std::int64_t i = 0; i < prefix_values; ++i) {
      detail::require(std::isfinite(values[i]), name,
                      "value " + std::to_string(i) + " is " + (std::isnan(values[i]) ? "NaN" : "Inf") +
                          ": block means must be finite");
    }
  }
  pool_one(q, geometry, prefix.q, prefix.blocks, pooled.q);
  require_finite(q, pooled.q, "q");
  pool_one(k, geometry, prefix.k, prefix.blocks, pooled.k);
  require_finite(k, pooled.k, "k");
  return pooled;
}

}  // namespace dynamicrad
