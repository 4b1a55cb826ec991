// Block means of a [batch, tokens, heads, dim] tensor on the GPU, with pool_blocks()' arithmetic
// (select.h): each element's float sum over the block's tokens in ascending order, times
// 1.0f / tokens. Used by the mask builder (the blocks selection pools itself) and by apply_rotary's
// pooled output where no fused kernel covers the case.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/cuda_check.cuh"
#include "cuda/element.cuh"

namespace dynamicrad::cuda {

// Where one pooling launch reads and writes: blocks [first_block, end_block) of x into
// out[batch, heads, out_blocks, dim]; flags (may be null) gets `flag` ORed in when a mean is not
// finite.
struct PoolTarget {
  std::int64_t tokens = 0;
  std::int64_t heads = 0;
  std::int64_t dim = 0;
  std::int64_t batch = 0;
  int block_size = 0;
  std::int64_t first_block = 0;
  std::int64_t end_block = 0;
  std::int64_t out_blocks = 0;
  float* out = nullptr;
  int* flags = nullptr;
  int flag = 0;
};

// Each translation unit gets its own copy of the kernels (whole-program CUDA compilation: a kernel is
// launched from the module that registered it).
namespace {

// One CTA per (block, batch element): a token's heads * dim values are contiguous, so each thread
// owns kVec consecutive elements of that row (one 16-byte load per token) and sums them over the
// block's tokens in ascending order.
template <class T>
__global__ void pool_kernel(const T* __restrict__ x, const __grid_constant__ PoolTarget t) {
  constexpr int kVec = 16 / sizeof(T);
  const std::int64_t blk = t.first_block + blockIdx.x;
  const std::int64_t b = blockIdx.y;
  const std::int64_t t0 = blk * t.block_size;
  const int n = static_cast<int>(min(static_cast<std::int64_t>(t.block_size), t.tokens - t0));
  const float inv = 1.0f / static_cast<float>(n);
  const std::int64_t row = t.heads * t.dim;  // elements per token
  const T* base = x + (b * t.tokens + t0) * row;
  bool finite = true;
  for (std::int64_t e0 = static_cast<std::int64_t>(threadIdx.x) * kVec; e0 < row; e0 += static_cast<std::int64_t>(blockDim.x) * kVec) {
    float acc[kVec];
#pragma unroll
    for (int v = 0; v < kVec; ++v) acc[v] = 0.0f;
#pragma unroll 4
    for (int i = 0; i < n; ++i) {
      const uint4 packed = *reinterpret_cast<const uint4*>(base + i * row + e0);
      const T* values = reinterpret_cast<const T*>(&packed);
#pragma unroll
      for (int v = 0; v < kVec; ++v) acc[v] += to_float(values[v]);
    }
#pragma unroll
    for (int v = 0; v < kVec; ++v) {
      const std::int64_t e = e0 + v;
      const float mean = acc[v] * inv;
      t.out[((b * t.heads + e / t.dim) * t.out_blocks + blk) * t.dim + e % t.dim] = mean;
      finite = finite && isfinite(mean);
    }
  }
  if (!finite && t.flags != nullptr) atomicOr(t.flags, t.flag);
}

// The same sums one element per thread, for rows that are not a whole number of 16-byte vectors.
template <class T>
__global__ void pool_scalar_kernel(const T* __restrict__ x, const __grid_constant__ PoolTarget t) {
  const std::int64_t blk = t.first_block + blockIdx.x;
  const std::int64_t b = blockIdx.y;
  const std::int64_t t0 = blk * t.block_size;
  const int n = static_cast<int>(min(static_cast<std::int64_t>(t.block_size), t.tokens - t0));
  const float inv = 1.0f / static_cast<float>(n);
  const std::int64_t row = t.heads * t.dim;
  const T* base = x + (b * t.tokens + t0) * row;
  bool finite = true;
  for (std::int64_t e = threadIdx.x; e < row; e += blockDim.x) {
    float acc = 0.0f;
#pragma unroll 8
    for (int i = 0; i < n; ++i) acc += to_float(base[i * row + e]);
    const float mean = acc * inv;
    t.out[((b * t.heads + e / t.dim) * t.out_blocks + blk) * t.dim + e % t.dim] = mean;
    finite = finite && isfinite(mean);
  }
  if (!finite && t.flags != nullptr) atomicOr(t.flags, t.flag);
}

// Launches the pooling of t's blocks on `stream` (nothing when the range is empty).
template <class T>
void launch_pool(const T* x, const PoolTarget& t, cudaStream_t stream) {
  if (t.end_block <= t.first_block) return;
  constexpr int kMaxThreads = 1024;
  constexpr int kVec = 16 / sizeof(T);
  const std::int64_t row = t.heads * t.dim;
  const unsigned threads = static_cast<unsigned>(std::min<std::int64_t>(kMaxThreads, std::max<std::int64_t>(32, row / 8)));
  const dim3 grid(static_cast<unsigned>(t.end_block - t.first_block), static_cast<unsigned>(t.batch));
  const bool aligned = reinterpret_cast<std::uintptr_t>(x) % 16 == 0 && row % kVec == 0;
  if (aligned) {
    pool_kernel<T><<<grid, threads, 0, stream>>>(x, t);
  } else {
    pool_scalar_kernel<T><<<grid, threads, 0, stream>>>(x, t);
  }
  check_cuda(cudaGetLastError(), "pool_kernel launch");
}

}  // namespace

}  // namespace dynamicrad::cuda
