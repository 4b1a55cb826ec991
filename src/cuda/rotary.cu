// apply_rotary() on the GPU, float arithmetic with explicitly rounded products and sums (__fmul_rn /
// __fsub_rn / __fadd_rn are never contracted into FMAs), vectors as wide as the rows allow.
//   * Rotation only, or NormScope::token: one CTA per (batch, token) row of heads x head_dim values;
//     with the norm the row is read twice (the second time mostly from L1).
//   * NormScope::head: a warp takes several heads of a token at once, one vector a lane each, in
//     registers, their sums of squares warp reductions; heads longer than a warp's vectors are read
//     twice.
//   * NormScope::head with the pooled output (select.h's PooledPrefix): a warp takes two heads of
//     one layout block through the block's tokens, so the block means are float sums in registers
//     instead of a second pass over the output (other cases pool the output with pool.cuh).
// Sums of squares are taken in double in a fixed order: each thread's own values in order, then a
// shuffle tree, then (a CTA) the warps' partials in order.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cuda_check.cuh"
#include "cuda/device_memory.cuh"
#include "cuda/element.cuh"
#include "cuda/pool.cuh"
#include "dynamicrad/error.h"
#include "dynamicrad/rotary.h"

namespace dynamicrad::detail {

namespace {

constexpr int kThreads = 128;

using cuda::from_float;
using cuda::to_float;

// kVec consecutive elements, moved as one vector of kVec * sizeof(T) bytes (4 to 16).
template <class T, int kVec>
struct alignas(kVec * sizeof(T)) Pack {
  T v[kVec];
};

template <class T, int kVec>
__device__ __forceinline__ void load(const T* p, float (&f)[kVec]) {
  const Pack<T, kVec> pack = *reinterpret_cast<const Pack<T, kVec>*>(p);
#pragma unroll
  for (int k = 0; k < kVec; ++k) f[k] = to_float(pack.v[k]);
}

template <class T, int kVec>
__device__ __forceinline__ void store(T* p, const float (&f)[kVec]) {
  Pack<T, kVec> pack;
#pragma unroll
  for (int k = 0; k < kVec; ++k) pack.v[k] = from_float<T>(f[k]);
  *reinterpret_cast<Pack<T, kVec>*>(p) = pack;
}

struct Params {
  const void* x;
  void* out;
  const float* cos;  // [rotated, head_dim]
  const float* sin;
  const float* weight;  // [heads * head_dim] (token scope) or [head_dim] (head scope); unused without the norm
  double eps;
  std::int64_t tokens;
  std::int64_t rotated;
  std::int64_t first_token;  // the launch covers tokens [first_token, tokens) of every batch element
  int heads;
  int head_dim;
  bool after_rounding;  // NormWeighting::after_rounding
  bool shared_pairs;    // RotaryPairs::shared
};

// The cos / sin entries of one token that the kVec values from column d use.
template <int kVec>
struct TableSlice {
  float c[kVec];
  float s[kVec];
};

// With shared pairs only cos at even and sin at odd columns are read, and the pair's other entries
// are copies of them (rotate() then needs no branch).
template <int kVec>
__device__ __forceinline__ void load_slice(const Params& p, std::int64_t n, int d, TableSlice<kVec>& t) {
  const float* c = p.cos + n * p.head_dim + d;
  const float* s = p.sin + n * p.head_dim + d;
#pragma unroll
  for (int k = 0; k < kVec; k += 2) {
    t.c[k] = c[k];
    t.s[k + 1] = s[k + 1];
    t.s[k] = p.shared_pairs ? t.s[k + 1] : s[k];
    t.c[k + 1] = p.shared_pairs ? t.c[k] : c[k + 1];
  }
}

// The norm of one value: round(fl(fl(v * r) [rounded] * w)).
template <class T>
__device__ __forceinline__ float normalise(float v, float r, float w, bool after_rounding) {
  float scaled = __fmul_rn(v, r);
  if (after_rounding) scaled = to_float(from_float<T>(scaled));
  return to_float(from_float<T>(__fmul_rn(scaled, w)));
}

// The rotation of kVec values (pairs) with their table entries (rotary.h: out[2i] uses c0 = c[2i],
// s0 = s[2i]; out[2i + 1] uses c1 = c[2i + 1], s1 = s[2i + 1]; load_slice() fills shared pairs).
template <int kVec>
__device__ __forceinline__ void rotate(float (&f)[kVec], const TableSlice<kVec>& t) {
#pragma unroll
  for (int k = 0; k < kVec; k += 2) {
    const float even = f[k], odd = f[k + 1];
    f[k] = __fsub_rn(__fmul_rn(even, t.c[k]), __fmul_rn(odd, t.s[k]));
    f[k + 1] = __fadd_rn(__fmul_rn(even, t.s[k + 1]), __fmul_rn(odd, t.c[k + 1]));
  }
}

__device__ __forceinline__ double warp_sum(double sum) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  return sum;
}

// The CTA's double sum in its fixed order (warp trees, then the warps in order); every thread gets it.
__device__ double block_sum(double sum) {
  __shared__ double partial[32];
  __shared__ double total;
  sum = warp_sum(sum);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) t += partial[w];
    total = t;
  }
  __syncthreads();
  return total;
}

// The row (batch * tokens + token) of launch item `item` of a launch over tokens [first_token, tokens).
__device__ __forceinline__ std::int64_t row_of(const Params& p, std::int64_t item) {
  const std::int64_t span = p.tokens - p.first_token;
  return (item / span) * p.tokens + p.first_token + item % span;
}

__device__ __forceinline__ float factor(double sum, int count, double eps) {
  return static_cast<float>(1.0 / sqrt(sum / static_cast<double>(count) + eps));
}

// Rotation only, or the norm over a token's row: one CTA of kThreads per row, one vector a thread at a
// time; with the norm the row is read twice, the second time mostly from L1. (A variant that kept the
// row in registers, at fewer CTAs an SM, was no faster inside the Wan step: BENCHMARKS.md.)
template <class T, bool kNorm, int kVec>
__global__ void __launch_bounds__(kThreads) rotary_row_kernel(const __grid_constant__ Params p) {
  const std::int64_t row = row_of(p, blockIdx.x);  // batch * tokens + token
  const std::int64_t n = row % p.tokens;
  const int width = p.heads * p.head_dim;
  const T* x_row = static_cast<const T*>(p.x) + row * width;
  T* out_row = static_cast<T*>(p.out) + row * width;
  constexpr int kStride = kThreads * kVec;
  float r = 1.0f;
  if constexpr (kNorm) {
    double sum = 0.0;
    for (int j = threadIdx.x * kVec; j < width; j += kStride) {
      float f[kVec];
      load<T, kVec>(x_row + j, f);
#pragma unroll
      for (int k = 0; k < kVec; ++k) sum += static_cast<double>(f[k]) * static_cast<double>(f[k]);
    }
    r = factor(block_sum(sum), width, p.eps);
  }
  for (int j = threadIdx.x * kVec; j < width; j += kStride) {
    float f[kVec];
    load<T, kVec>(x_row + j, f);
    if constexpr (kNorm) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) f[k] = normalise<T>(f[k], r, p.weight[j + k], p.after_rounding);
    }
    if (n < p.rotated) {
      TableSlice<kVec> t;
      load_slice(p, n, j % p.head_dim, t);  // kVec divides head_dim: a vector never straddles two heads
      rotate(f, t);
    }
    store<T, kVec>(out_row + j, f);
  }
}

// Heads a warp of rotary_heads_kernel normalises at once (one vector a lane each, in registers).
constexpr int kWarpHeads = 8;

// NormScope::head with short heads (head_dim <= 32 * kVec): one vector a lane holds a head, and a
// warp normalises kWarpHeads heads of one token at once. CTA (row, y) has blockDim.x / 32 warps; warp
// w takes heads from (y * warps + w) * kWarpHeads. As above, every load is issued before the first
// use (heads past the last clamped to it); the token's table slice and the weights are loaded once.
template <class T, int kVec>
__global__ void __launch_bounds__(kThreads) rotary_heads_kernel(const __grid_constant__ Params p) {
  const int warps = static_cast<int>(blockDim.x / 32);
  const int h0 = (static_cast<int>(blockIdx.y) * warps + static_cast<int>(threadIdx.x / 32)) * kWarpHeads;
  if (h0 >= p.heads) return;  // the whole warp
  const std::int64_t row = row_of(p, blockIdx.x);
  const std::int64_t n = row % p.tokens;
  const int d = (threadIdx.x % 32) * kVec;
  const bool lane_active = d < p.head_dim;
  const int dc = lane_active ? d : 0;
  const T* x_row = static_cast<const T*>(p.x) + row * p.heads * p.head_dim;
  float f[kWarpHeads][kVec];
#pragma unroll
  for (int v = 0; v < kWarpHeads; ++v) {
    load<T, kVec>(x_row + static_cast<std::int64_t>(min(h0 + v, p.heads - 1)) * p.head_dim + dc, f[v]);
  }
  float w[kVec];
#pragma unroll
  for (int k = 0; k < kVec; ++k) w[k] = p.weight[dc + k];
  const bool rotated = n < p.rotated;
  TableSlice<kVec> t;
  if (rotated) load_slice(p, n, dc, t);
  double sum[kWarpHeads];
#pragma unroll
  for (int v = 0; v < kWarpHeads; ++v) {
    sum[v] = 0.0;
    if (lane_active) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) sum[v] += static_cast<double>(f[v][k]) * static_cast<double>(f[v][k]);
    }
    sum[v] = warp_sum(sum[v]);
  }
  if (!lane_active) return;
  T* out_row = static_cast<T*>(p.out) + row * p.heads * p.head_dim;
#pragma unroll
  for (int v = 0; v < kWarpHeads; ++v) {
    if (h0 + v >= p.heads) break;
    const float r = factor(sum[v], p.head_dim, p.eps);
#pragma unroll
    for (int k = 0; k < kVec; ++k) f[v][k] = normalise<T>(f[v][k], r, w[k], p.after_rounding);
    if (rotated) rotate(f[v], t);
    store<T, kVec>(out_row + static_cast<std::int64_t>(h0 + v) * p.head_dim + d, f[v]);
  }
}

// NormScope::head with long heads (head_dim > 32 * kVec): one warp per (row, head), kThreads / 32
// heads a CTA, the head read twice (the second time from L1).
template <class T, int kVec>
__global__ void __launch_bounds__(kThreads) rotary_head_kernel(const __grid_constant__ Params p,
                                                                std::int64_t heads_total) {
  const std::int64_t local = static_cast<std::int64_t>(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (local >= heads_total) return;  // the whole warp
  const std::int64_t row = row_of(p, local / p.heads);
  const std::int64_t item = row * p.heads + local % p.heads;
  const std::int64_t n = row % p.tokens;
  const T* x_head = static_cast<const T*>(p.x) + item * p.head_dim;
  T* out_head = static_cast<T*>(p.out) + item * p.head_dim;
  constexpr int kStride = 32 * kVec;
  double sum = 0.0;
  for (int d = (threadIdx.x % 32) * kVec; d < p.head_dim; d += kStride) {
    float f[kVec];
    load<T, kVec>(x_head + d, f);
#pragma unroll
    for (int k = 0; k < kVec; ++k) sum += static_cast<double>(f[k]) * static_cast<double>(f[k]);
  }
  const float r = factor(warp_sum(sum), p.head_dim, p.eps);
  for (int d = (threadIdx.x % 32) * kVec; d < p.head_dim; d += kStride) {
    float f[kVec];
    load<T, kVec>(x_head + d, f);
#pragma unroll
    for (int k = 0; k < kVec; ++k) f[k] = normalise<T>(f[k], r, p.weight[d + k], p.after_rounding);
    if (n < p.rotated) {
      TableSlice<kVec> t;
      load_slice(p, n, d, t);
      rotate(f, t);
    }
    store<T, kVec>(out_head + d, f);
  }
}

// Heads a warp of rotary_pool_heads_kernel carries through a layout block, and its CTA size at most.
// Measured on an H100 (HunyuanVideo 720p single-stream Q, bf16, 2026-11-27): 2 heads a warp took
// 0.862 ms, 3: 0.876, 4: 0.928, 8: 0.890, 1: 1.122; rotary_heads_kernel alone takes 0.888 ms and
// pooling its output afterwards 0.269 ms more. Taking 2 to 8 tokens at a time (their loads in flight
// together) was slower in every shape tried (0.953 to 2.503 ms): more registers, fewer warps.
constexpr int kPoolHeads = 2;
constexpr int kPoolThreads = 256;

struct PoolParams {
  float* pooled;       // [batch, heads, blocks, head_dim]
  int block;           // tokens a block
  std::int64_t blocks;
};

// NormScope::head with short heads (head_dim <= 32 * kVec) and the pooled output. Warp w of CTA
// (block, y, batch) takes kHeads heads of one layout block through the block's tokens in ascending
// order, one vector a lane. Each token is normalised and rotated as rotary_heads_kernel does (the same
// bits), and its rounded outputs are added to float sums, pool_blocks()' order. Lane j computes the
// norm factor of head j % kHeads only (the double square root and division that every lane would
// otherwise repeat for every head) and shuffles hand it to the others. The next token's values are
// loaded before this token's reductions run.
template <class T, int kVec, int kHeads>
__global__ void __launch_bounds__(kPoolThreads) rotary_pool_heads_kernel(const __grid_constant__ Params p,
                                                                          const __grid_constant__ PoolParams pp) {
  static_assert(kHeads <= 32, "one norm factor a lane");
  const int warps = static_cast<int>(blockDim.x / 32);
  const int h0 = (static_cast<int>(blockIdx.y) * warps + static_cast<int>(threadIdx.x / 32)) * kHeads;
  if (h0 >= p.heads) return;  // the whole warp
  const std::int64_t blk = blockIdx.x;
  const std::int64_t b = blockIdx.z;
  const std::int64_t t0 = blk * pp.block;
  const int count = static_cast<int>(min(static_cast<std::int64_t>(pp.block), p.tokens - t0));
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int d = lane * kVec;
  const bool lane_active = d < p.head_dim;
  const int dc = lane_active ? d : 0;
  const std::int64_t width = static_cast<std::int64_t>(p.heads) * p.head_dim;
  const T* x_block = static_cast<const T*>(p.x) + (b * p.tokens + t0) * width;
  T* out_block = static_cast<T*>(p.out) + (b * p.tokens + t0) * width;
  int head_offset[kHeads];  // heads past the last clamped to it (loaded, never stored)
#pragma unroll
  for (int v = 0; v < kHeads; ++v) head_offset[v] = min(h0 + v, p.heads - 1) * p.head_dim + dc;
  float w[kVec];
#pragma unroll
  for (int k = 0; k < kVec; ++k) w[k] = p.weight[dc + k];
  float acc[kHeads][kVec];
  float f[kHeads][kVec];
#pragma unroll
  for (int v = 0; v < kHeads; ++v) {
#pragma unroll
    for (int k = 0; k < kVec; ++k) acc[v][k] = 0.0f;
    load<T, kVec>(x_block + head_offset[v], f[v]);
  }
  for (int i = 0; i < count; ++i) {
    float next[kHeads][kVec];
    if (i + 1 < count) {
#pragma unroll
      for (int v = 0; v < kHeads; ++v) load<T, kVec>(x_block + (i + 1) * width + head_offset[v], next[v]);
    }
    const std::int64_t n = t0 + i;
    const bool rotated = n < p.rotated;
    TableSlice<kVec> t;
    if (rotated) load_slice(p, n, dc, t);
    double mine = 0.0;  // the sum of squares of head lane % kHeads
#pragma unroll
    for (int v = 0; v < kHeads; ++v) {
      double sum = 0.0;
      if (lane_active) {
#pragma unroll
        for (int k = 0; k < kVec; ++k) sum += static_cast<double>(f[v][k]) * static_cast<double>(f[v][k]);
      }
      sum = warp_sum(sum);
      if (lane % kHeads == v) mine = sum;
    }
    const float r_mine = factor(mine, p.head_dim, p.eps);
#pragma unroll
    for (int v = 0; v < kHeads; ++v) {
      const float r = __shfl_sync(0xffffffffu, r_mine, v);
#pragma unroll
      for (int k = 0; k < kVec; ++k) f[v][k] = normalise<T>(f[v][k], r, w[k], p.after_rounding);
      if (rotated) rotate(f[v], t);
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        f[v][k] = to_float(from_float<T>(f[v][k]));  // the value the output holds
        acc[v][k] += f[v][k];
      }
      if (lane_active && h0 + v < p.heads) store<T, kVec>(out_block + i * width + head_offset[v], f[v]);
    }
    if (i + 1 < count) {
#pragma unroll
      for (int v = 0; v < kHeads; ++v) {
#pragma unroll
        for (int k = 0; k < kVec; ++k) f[v][k] = next[v][k];
      }
    }
  }
  if (!lane_active) return;
  const float inv = 1.0f / static_cast<float>(count);
#pragma unroll
  for (int v = 0; v < kHeads; ++v) {
    if (h0 + v >= p.heads) break;
    float* mean = pp.pooled + ((b * p.heads + h0 + v) * pp.blocks + blk) * p.head_dim + d;
#pragma unroll
    for (int k = 0; k < kVec; ++k) mean[k] = acc[v][k] * inv;
  }
}

Params make_params(const RotaryArgs& a) {
  const Shape& s = a.x.shape;
  Params p;
  p.x = a.x.data;
  p.out = a.out.data;
  p.cos = a.cos;
  p.sin = a.sin;
  p.weight = a.norm_weight;
  p.eps = a.norm_eps;
  p.tokens = s.tokens;
  p.rotated = a.rotated_tokens < 0 ? s.tokens : a.rotated_tokens;
  p.first_token = 0;
  p.heads = static_cast<int>(s.heads);
  p.head_dim = static_cast<int>(s.head_dim);
  p.after_rounding = a.norm_weighting == NormWeighting::after_rounding;
  p.shared_pairs = a.pairs == RotaryPairs::shared;
  return p;
}

template <class T, bool kNorm, int kVec>
void launch_row(const RotaryArgs& a) {
  const unsigned rows = static_cast<unsigned>(a.x.shape.batch * a.x.shape.tokens);
  rotary_row_kernel<T, kNorm, kVec><<<rows, kThreads, 0, static_cast<cudaStream_t>(a.stream)>>>(make_params(a));
  cuda::check_cuda(cudaGetLastError(), "rotary_row_kernel launch");
}

// Tokens [first_token, tokens) of every batch element (none when first_token == tokens).
template <class T, int kVec>
void launch_head(const RotaryArgs& a, std::int64_t first_token = 0) {
  Params p = make_params(a);
  p.first_token = first_token;
  const std::int64_t rows = a.x.shape.batch * (a.x.shape.tokens - first_token);
  if (rows == 0) return;
  const auto stream = static_cast<cudaStream_t>(a.stream);
  if (p.head_dim <= 32 * kVec) {
    const int warps_needed = (p.heads + kWarpHeads - 1) / kWarpHeads;
    const int warps = warps_needed < kThreads / 32 ? warps_needed : kThreads / 32;
    const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>((warps_needed + warps - 1) / warps));
    rotary_heads_kernel<T, kVec><<<grid, 32 * warps, 0, stream>>>(p);
    cuda::check_cuda(cudaGetLastError(), "rotary_heads_kernel launch");
    return;
  }
  const std::int64_t heads_total = rows * p.heads;
  const unsigned grid = static_cast<unsigned>((heads_total + kThreads / 32 - 1) / (kThreads / 32));
  rotary_head_kernel<T, kVec><<<grid, kThreads, 0, stream>>>(p, heads_total);
  cuda::check_cuda(cudaGetLastError(), "rotary_head_kernel launch");
}

// The pooled blocks with rotary_pool_heads_kernel, then the tokens after them with launch_head.
template <class T, int kVec>
void launch_pool_head(const RotaryArgs& a) {
  const Params p = make_params(a);
  PoolParams pp;
  pp.pooled = a.pooled;
  pp.block = a.pool_block;
  pp.blocks = a.pooled_blocks;
  // The warps a block needs, in as few CTAs as kPoolThreads allows, balanced.
  const int warps_needed = (p.heads + kPoolHeads - 1) / kPoolHeads;
  const int ctas = (warps_needed * 32 + kPoolThreads - 1) / kPoolThreads;
  const int warps = (warps_needed + ctas - 1) / ctas;
  const dim3 grid(static_cast<unsigned>(a.pooled_blocks), static_cast<unsigned>(ctas), static_cast<unsigned>(a.x.shape.batch));
  const auto stream = static_cast<cudaStream_t>(a.stream);
  rotary_pool_heads_kernel<T, kVec, kPoolHeads><<<grid, 32 * warps, 0, stream>>>(p, pp);
  cuda::check_cuda(cudaGetLastError(), "rotary_pool_heads_kernel launch");
  launch_head<T, kVec>(a, std::min<std::int64_t>(a.pooled_blocks * a.pool_block, a.x.shape.tokens));
}

// The block means of the output, read back (the cases without a fused kernel).
template <class T>
void pool_output(const RotaryArgs& a) {
  cuda::PoolTarget t;
  t.tokens = a.x.shape.tokens;
  t.heads = a.x.shape.heads;
  t.dim = a.x.shape.head_dim;
  t.batch = a.x.shape.batch;
  t.block_size = a.pool_block;
  t.first_block = 0;
  t.end_block = a.pooled_blocks;
  t.out_blocks = a.pooled_blocks;
  t.out = a.pooled;
  cuda::launch_pool(static_cast<const T*>(a.out.data), t, static_cast<cudaStream_t>(a.stream));
}

bool aligned(const void* ptr, std::size_t bytes) { return reinterpret_cast<std::uintptr_t>(ptr) % bytes == 0; }

// Whether kVec-element vectors fit: kVec divides head_dim and both pointers are aligned to a vector.
template <class T, int kVec>
bool vectors_fit(const RotaryArgs& a) {
  return a.x.shape.head_dim % kVec == 0 && aligned(a.x.data, kVec * sizeof(T)) && aligned(a.out.data, kVec * sizeof(T));
}

// The widest vectors that head_dim and both pointers allow, else pairs: 16 bytes on the row kernel;
// 4 values on the head kernels, so that a 128-value head is one vector a lane.
template <class T>
void launch(const RotaryArgs& a) {
  if (a.norm_weight != nullptr && a.norm_scope == NormScope::head) {
    if (vectors_fit<T, 4>(a)) {
      if (a.pooled != nullptr && a.x.shape.head_dim <= 32 * 4) {
        launch_pool_head<T, 4>(a);
        return;
      }
      launch_head<T, 4>(a);
    } else {
      launch_head<T, 2>(a);
    }
    if (a.pooled != nullptr) pool_output<T>(a);
    return;
  }
  constexpr int kWide = 16 / static_cast<int>(sizeof(T));
  const bool wide = vectors_fit<T, kWide>(a);
  if (a.norm_weight != nullptr) {
    if (wide) launch_row<T, true, kWide>(a); else launch_row<T, true, 2>(a);
  } else {
    if (wide) launch_row<T, false, kWide>(a); else launch_row<T, false, 2>(a);
  }
  if (a.pooled != nullptr) pool_output<T>(a);
}

}  // namespace

void apply_rotary_cuda(const RotaryArgs& a) {
  // The pooling grids put the batch in a grid dimension of at most 65535 blocks.
  if (a.pooled != nullptr && a.x.shape.batch > 65535) {
    throw Error("x", "batch " + std::to_string(a.x.shape.batch) + ": the CUDA pooled output takes at most 65535");
  }
  // The kernels run on x's device, whatever device is current; every other array must live there.
  const char* who = "the CUDA rotary kernel";
  const int device = cuda::device_of(a.x.data, "x", who);
  cuda::require_device_memory(a.out.data, "out", device, who);
  if (a.rotated_tokens != 0) {
    cuda::require_device_memory(a.cos, "cos", device, who);
    cuda::require_device_memory(a.sin, "sin", device, who);
  }
  if (a.norm_weight != nullptr) cuda::require_device_memory(a.norm_weight, "norm_weight", device, who);
  if (a.pooled != nullptr) cuda::require_device_memory(a.pooled, "pooled", device, who);
  cuda::DeviceGuard guard(device);
  switch (a.x.dtype) {
    case DType::f32: launch<float>(a); break;
    case DType::f16: launch<__half>(a); break;
    case DType::bf16: launch<__nv_bfloat16>(a); break;
  }
}

}  // namespace dynamicrad::detail
