// The Q/K RMSNorm and rotary position embedding of diffusers' video processors, in one pass.
//
// For every batch element, token n, head and pair i of x [batch, tokens, heads, head_dim]:
//   out[2i]     = round(fl(x[2i] * c0) - fl(x[2i+1] * s0))
//   out[2i + 1] = round(fl(x[2i] * s1) + fl(x[2i+1] * c1))
// with the table entries of RotaryPairs: Wan's processor uses c0 = c1 = cos[n][2i] and
// s0 = s1 = sin[n][2i+1]; diffusers' apply_rotary_emb (HunyuanVideo) uses each output's own entries,
// c0 = cos[n][2i], s0 = sin[n][2i], c1 = cos[n][2i+1], s1 = sin[n][2i+1]. Everything is float
// arithmetic with every product and sum rounded on its own (never a fused multiply-add), then rounded
// to x's dtype: bit for bit what the stock processors' separate torch operations compute, in one read
// and one write of x instead of about ten passes over float temporaries. Tokens at or past
// rotated_tokens are not rotated (HunyuanVideo's text tokens): out = x, after the norm.
//
// Optionally the RMSNorm that the model applies to Q and K first runs in the same pass, over each
// group of values NormScope names (all heads of a token, or one head):
//   r = float(1 / sqrt(sum_j x[j]^2 / group + eps)), the sum of squares and r in double;
//   NormWeighting::in_float        x'[j] = round(fl(fl(x[j] * r) * w[j]))          (torch.nn.RMSNorm)
//   NormWeighting::after_rounding  x'[j] = round(fl(round(fl(x[j] * r)) * w[j]))   (diffusers' RMSNorm
//                                  with a 16-bit weight: x * r is rounded to x's dtype first)
// The stock norms sum in float, so r can differ from theirs in the last bit; everything else is the
// stock arithmetic. CPU and CUDA give the same bits.
#pragma once

#include <cstdint>

#include "dynamicrad/attention.h"
#include "dynamicrad/tensor.h"

namespace dynamicrad {

// The values one RMSNorm normalises.
enum class NormScope {
  token,  // all heads x head_dim values of a token (Wan's qk_norm "rms_norm_across_heads")
  head,   // each head's head_dim values (HunyuanVideo's qk_norm "rms_norm")
};

// Where the norm's weight multiplies (see the formulas above).
enum class NormWeighting { in_float, after_rounding };

// Which table entries the two outputs of a pair use (see the formulas above).
enum class RotaryPairs {
  shared,       // Wan's processor: cos[2i] and sin[2i + 1] for both
  per_element,  // diffusers' apply_rotary_emb: out[k] uses cos[k] and sin[k]
};

struct RotaryArgs {
  ConstTensor x;                       // [batch, tokens, heads, head_dim], head_dim even
  MutableTensor out;                   // same shape and dtype as x (not the same memory)
  const float* cos = nullptr;          // [rotated tokens, head_dim] (Wan's [1, tokens, 1, head_dim] table);
                                       // may be null when rotated_tokens is 0 (never read then)
  const float* sin = nullptr;          // [rotated tokens, head_dim]
  RotaryPairs pairs = RotaryPairs::shared;
  std::int64_t rotated_tokens = -1;    // tokens [0, rotated_tokens) are rotated; -1: all (0 .. tokens allowed)
  // RMSNorm first when norm_weight is given: [heads * head_dim] (NormScope::token) or [head_dim]
  // (NormScope::head); nullptr: rotation only.
  const float* norm_weight = nullptr;
  NormScope norm_scope = NormScope::token;
  NormWeighting norm_weighting = NormWeighting::in_float;
  double norm_eps = 0.0;               // the RMSNorm's eps (>= 0, finite)
  // Block means of `out` for selection (select.h's PooledPrefix), taken in the same pass: when
  // pooled is given, pooled[b, h, blk, :] for blk < pooled_blocks is the mean of out's tokens
  // [blk * pool_block, min((blk + 1) * pool_block, tokens)), with pool_blocks()' arithmetic (float
  // sums in ascending token order of the rounded outputs, times 1.0f / count), so it equals pooling
  // `out` bit for bit. pooled_blocks in [1, ceil(tokens / pool_block)].
  float* pooled = nullptr;             // [batch, heads, pooled_blocks, head_dim] float, or nullptr
  int pool_block = 0;                  // tokens a block (the geometry's block_size), >= 1
  std::int64_t pooled_blocks = 0;
  void* stream = nullptr;              // cuda: the cudaStream_t (nullptr: the default stream)
  int threads = 0;                     // cpu: worker threads (0: all)
};

// Throws Error naming the bad field. On Device::cuda every pointer is device memory of one device,
// x's, where the kernels run whatever device is current (stream: one of that device's); a pointer
// to host memory or to another device throws Error naming it. Without the CUDA backend that device
// throws Error("device", ...).
void apply_rotary(const RotaryArgs& args, Device device);

namespace detail {
void apply_rotary_cuda(const RotaryArgs& args);
}  // namespace detail

}  // namespace dynamicrad
