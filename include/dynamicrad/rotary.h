// Wan's rotary position embedding (diffusers' WanAttnProcessor) in one pass.
//
// For every batch element, token n, head and pair i of x [batch, tokens, heads, head_dim]:
//   out[2i]     = round(fl(x[2i] * c) - fl(x[2i+1] * s))
//   out[2i + 1] = round(fl(x[2i] * s) + fl(x[2i+1] * c)),   c = cos[n][2i], s = sin[n][2i + 1]
// in float, every product and sum rounded on its own (never a fused multiply-add), then rounded to
// x's dtype: bit for bit what the stock processor's separate torch operations compute, in one read
// and one write of x instead of about ten passes over float temporaries.
#pragma once

#include "dynamicrad/attention.h"
#include "dynamicrad/tensor.h"

namespace dynamicrad {

struct RotaryArgs {
  ConstTensor x;               // [batch, tokens, heads, head_dim], head_dim even
  MutableTensor out;           // same shape and dtype as x (not the same memory)
  const float* cos = nullptr;  // [tokens, head_dim] (Wan's [1, tokens, 1, head_dim] table)
  const float* sin = nullptr;  // [tokens, head_dim]
  void* stream = nullptr;      // cuda: the cudaStream_t (nullptr: the default stream)
  int threads = 0;             // cpu: worker threads (0: all)
};

// Throws Error naming the bad field. On Device::cuda every pointer is device memory; without the
// CUDA backend that device throws Error("device", ...).
void apply_rotary(const RotaryArgs& args, Device device);

namespace detail {
void apply_rotary_cuda(const RotaryArgs& args);
}  // namespace detail

}  // namespace dynamicrad
