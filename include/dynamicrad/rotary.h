// Wan's rotary position embedding (diffusers' WanAttnProcessor) in one pass.
//
// For every batch element, token n, head and pair i of x [batch, tokens, heads, head_dim]:
//   out[2i]     = round(fl(x[2i] * c) - fl(x[2i+1] * s))
//   out[2i + 1] = round(fl(x[2i] * s) + fl(x[2i+1] * c)),   c = cos[n][2i], s = sin[n][2i + 1]
// in float, every product and sum rounded on its own (never a fused multiply-add), then rounded to
// x's dtype: bit for bit what the stock processor's separate torch operations compute, in one read
// and one write of x instead of about ten passes over float temporaries.
//
// Optionally the RMSNorm that Wan applies to Q and K before the rotation (norm_q / norm_k over all
// heads of a token, torch.nn.RMSNorm) runs in the same pass. For every (batch, token) row of
// heads x head_dim values, before the rotation:
//   x'[j] = round(fl(fl(x[j] * r) * w[j])),   r = float(1 / sqrt(sum_j x[j]^2 / (heads * head_dim) + eps))
// with the sum of squares and r computed in double. The stock norm sums in float, so r can differ
// from its r in the last bit; everything else is the stock arithmetic. CPU and CUDA give the same bits.
#pragma once

#include "dynamicrad/attention.h"
#include "dynamicrad/tensor.h"

namespace dynamicrad {

struct RotaryArgs {
  ConstTensor x;                       // [batch, tokens, heads, head_dim], head_dim even
  MutableTensor out;                   // same shape and dtype as x (not the same memory)
  const float* cos = nullptr;          // [tokens, head_dim] (Wan's [1, tokens, 1, head_dim] table)
  const float* sin = nullptr;          // [tokens, head_dim]
  const float* norm_weight = nullptr;  // [heads * head_dim]: RMSNorm first; nullptr: rotation only
  double norm_eps = 0.0;               // the RMSNorm's eps (>= 0, finite)
  void* stream = nullptr;              // cuda: the cudaStream_t (nullptr: the default stream)
  int threads = 0;                     // cpu: worker threads (0: all)
};

// Throws Error naming the bad field. On Device::cuda every pointer is device memory; without the
// CUDA backend that device throws Error("device", ...).
void apply_rotary(const RotaryArgs& args, Device device);

namespace detail {
void apply_rotary_cuda(const RotaryArgs& args);
}  // namespace detail

}  // namespace dynamicrad
