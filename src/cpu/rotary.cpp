// apply_rotary(): argument checks and the CPU loop (with the optional RMSNorm first). Compiled with
// -ffp-contract=off (CMakeLists.txt) so that no product and sum fuse: the bits must equal the stock
// processor's.
#include "dynamicrad/rotary.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "core/check.h"
#include "core/parallel.h"
#include "core/pool.h"
#include "cpu/store.h"

namespace dynamicrad {

namespace {

using detail::require;

void check(const RotaryArgs& a) {
  require(a.x.data != nullptr, "x", "data is null");
  require(a.out.data != nullptr, "out", "data is null");
  // With no token rotated the tables are never read, and may be empty (null).
  if (a.rotated_tokens != 0) {
    require(a.cos != nullptr, "cos", "is null");
    require(a.sin != nullptr, "sin", "is null");
  }
  const Shape& s = a.x.shape;
  require(s.batch >= 1 && s.tokens >= 1 && s.heads >= 1 && s.head_dim >= 2, "x",
          "shape " + to_string(s) + ": every dimension must be >= 1 and head_dim >= 2");
  require(s.head_dim % 2 == 0, "x", "head_dim " + std::to_string(s.head_dim) + " must be even (pairs)");
  require(a.out.shape == s, "out", "shape " + to_string(a.out.shape) + " differs from x's " + to_string(s));
  require(a.out.dtype == a.x.dtype, "out", "dtype " + to_string(a.out.dtype) + " differs from x's " + to_string(a.x.dtype));
  require(a.out.data != a.x.data, "out", "must not alias x");
  require(a.rotated_tokens >= -1 && a.rotated_tokens <= s.tokens, "rotated_tokens",
          std::to_string(a.rotated_tokens) + ": allowed -1 (all) or [0, " + std::to_string(s.tokens) + "]");
  if (a.norm_weight != nullptr) {
    require(std::isfinite(a.norm_eps) && a.norm_eps >= 0.0, "norm_eps",
            std::to_string(a.norm_eps) + ": must be finite and >= 0");
  }
  if (a.pooled != nullptr) {
    require(a.pool_block >= 1, "pool_block", std::to_string(a.pool_block) + ": must be >= 1 (tokens a block)");
    const std::int64_t blocks = (s.tokens + a.pool_block - 1) / a.pool_block;
    require(a.pooled_blocks >= 1 && a.pooled_blocks <= blocks, "pooled_blocks",
            std::to_string(a.pooled_blocks) + ": allowed [1, " + std::to_string(blocks) + "] (blocks of " +
                std::to_string(a.pool_block) + " in " + std::to_string(s.tokens) + " tokens)");
  }
}

// The RMSNorm factor of `count` values from `begin`: float(1 / sqrt(sum x^2 / count + eps)), in double.
float norm_factor(const RotaryArgs& a, std::int64_t begin, std::int64_t count) {
  double sum = 0.0;
  for (std::int64_t j = 0; j < count; ++j) {
    const double v = load_as_float(a.x.data, a.x.dtype, begin + j);
    sum += v * v;
  }
  return static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(count) + a.norm_eps));
}

// x rounded to `dtype` and back (the stock norm returns x's dtype before the rotation reads it).
float round_to(DType dtype, float v) {
  switch (dtype) {
    case DType::f32: return v;
    case DType::f16: return half_to_float(float_to_half(v));
    case DType::bf16: return bfloat16_to_float(float_to_bfloat16(v));
  }
  return v;
}

}  // namespace

void apply_rotary(const RotaryArgs& a, Device device) {
  check(a);
  if (device == Device::cuda) {
    // The kernels move at least pairs as one vector (wider vectors where the rows allow), one CTA
    // per row (one warp per head with NormScope::head).
    const std::int64_t rows = a.x.shape.batch * a.x.shape.tokens;
    require(rows <= std::numeric_limits<std::int32_t>::max(), "x",
            "batch x tokens = " + std::to_string(rows) + ": at most 2^31 - 1 rows on the GPU");
    require(rows * a.x.shape.heads <= std::numeric_limits<std::int32_t>::max(), "x",
            "batch x tokens x heads = " + std::to_string(rows * a.x.shape.heads) + ": at most 2^31 - 1 heads on the GPU");
    require(a.x.shape.heads * a.x.shape.head_dim <= std::numeric_limits<std::int32_t>::max(), "x",
            "heads x head_dim: at most 2^31 - 1 values a row on the GPU");
    const std::uintptr_t pair_bytes = 2 * dtype_size(a.x.dtype);
    require(reinterpret_cast<std::uintptr_t>(a.x.data) % pair_bytes == 0, "x", "data must be aligned to a pair of elements");
    require(reinterpret_cast<std::uintptr_t>(a.out.data) % pair_bytes == 0, "out", "data must be aligned to a pair of elements");
    detail::apply_rotary_cuda(a);
    return;
  }
  const Shape& s = a.x.shape;
  const std::int64_t rows = s.batch * s.tokens;
  const std::int64_t width = s.heads * s.head_dim;
  const std::int64_t rotated = a.rotated_tokens < 0 ? s.tokens : a.rotated_tokens;
  const bool norm = a.norm_weight != nullptr;
  const bool per_head = a.norm_scope == NormScope::head;
  const bool shared = a.pairs == RotaryPairs::shared;
  detail::parallel_for(rows, detail::resolve_threads(a.threads), [&](std::int64_t row, int) {
    const std::int64_t n = row % s.tokens;
    float r = norm && !per_head ? norm_factor(a, row * width, width) : 1.0f;
    for (std::int64_t h = 0; h < s.heads; ++h) {
      const std::int64_t base = (row * s.heads + h) * s.head_dim;
      if (norm && per_head) r = norm_factor(a, base, s.head_dim);
      const float* weight = !norm ? nullptr : per_head ? a.norm_weight : a.norm_weight + h * s.head_dim;
      const auto load = [&](std::int64_t i) {
        const float v = load_as_float(a.x.data, a.x.dtype, base + i);
        if (!norm) return v;
        float scaled = v * r;
        if (a.norm_weighting == NormWeighting::after_rounding) scaled = round_to(a.x.dtype, scaled);
        return round_to(a.x.dtype, scaled * weight[i]);
      };
      for (std::int64_t i = 0; i < s.head_dim; i += 2) {
        const float even = load(i);
        const float odd = load(i + 1);
        if (n >= rotated) {
          detail::store_float(a.out, base + i, even);
          detail::store_float(a.out, base + i + 1, odd);
          continue;
        }
        const float* c_row = a.cos + n * s.head_dim;
        const float* s_row = a.sin + n * s.head_dim;
        const float c0 = c_row[i], s1 = s_row[i + 1];
        const float s0 = shared ? s1 : s_row[i];
        const float c1 = shared ? c0 : c_row[i + 1];
        const float ec = even * c0, os = odd * s0, es = even * s1, oc = odd * c1;
        detail::store_float(a.out, base + i, ec - os);
        detail::store_float(a.out, base + i + 1, es + oc);
      }
    }
  });
  if (a.pooled != nullptr) {
    detail::pool_block_means(ConstTensor(a.out), a.pool_block, 0, a.pooled_blocks, a.pooled_blocks, a.pooled);
  }
}

}  // namespace dynamicrad
