// Device helpers shared by the attention kernels: element types, fast exp2, quad reductions and
// the work decomposition of a layout row.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/sparse_attention_params.cuh"

namespace dynamicrad::cuda {

// Packs two floats into one 32-bit register of two 16-bit elements, `lo` in the low half (the
// lower column index in mma fragments).
template <typename T>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi);

template <>
__device__ __forceinline__ std::uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<std::uint32_t*>(&v);
}

template <>
__device__ __forceinline__ std::uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<std::uint32_t*>(&v);
}

// 2^x with the SFU instruction (relative error ~2^-22; exp2(-inf) = 0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Reductions over the 4 lanes of a quad (lanes 4g .. 4g+3 hold one accumulator row between them).
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Where a layout row's queries live: row r = (b * heads + h) * blocks + q_block.
struct RowCoords {
  int b;
  int h;
  int q_block;
};

__device__ __forceinline__ RowCoords row_coords(const SparseAttentionParams& p, int row) {
  RowCoords c;
  c.q_block = row % p.blocks;
  const int bh = row / p.blocks;
  c.h = bh % p.heads;
  c.b = bh / p.heads;
  return c;
}

// Online-softmax state of one accumulator row, in the base-2 domain of scaled scores
// (x = score * scale * log2 e). `sum` is this thread's partial sum: the quad adds its four partials
// once, at the end (every lane of a quad rescales by the same factor, so partial sums stay exact).
struct RowState {
  float max;
  float sum;
};

// The largest scaled score seen so far, or 0 while a row has seen only masked (-inf) scores, so that
// exp2(x - max) never evaluates (-inf) - (-inf).
__device__ __forceinline__ float safe_max(float m) { return m == -INFINITY ? 0.0f : m; }

}  // namespace dynamicrad::cuda
