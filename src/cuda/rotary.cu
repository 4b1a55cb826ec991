// apply_rotary() on the GPU: one thread per pair, float arithmetic with explicitly rounded products
// and sums (__fmul_rn / __fsub_rn / __fadd_rn are never contracted into FMAs).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cuda_check.cuh"
#include "dynamicrad/rotary.h"

namespace dynamicrad::detail {

namespace {

__device__ __forceinline__ float2 load_pair(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ float2 load_pair(const __half* p) { return __half22float2(*reinterpret_cast<const __half2*>(p)); }
__device__ __forceinline__ float2 load_pair(const __nv_bfloat16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}
__device__ __forceinline__ void store_pair(float* p, float2 v) { *reinterpret_cast<float2*>(p) = v; }
__device__ __forceinline__ void store_pair(__half* p, float2 v) { *reinterpret_cast<__half2*>(p) = __float22half2_rn(v); }
__device__ __forceinline__ void store_pair(__nv_bfloat16* p, float2 v) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __float22bfloat162_rn(v);
}

template <class T>
__global__ void rotary_kernel(const T* __restrict__ x, T* __restrict__ out, const float* __restrict__ cos_table,
                              const float* __restrict__ sin_table, std::int64_t pairs, std::int64_t tokens,
                              std::int64_t heads, std::int64_t half_dim) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t p = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < pairs; p += stride) {
    const std::int64_t i = p % half_dim;
    const std::int64_t n = (p / (half_dim * heads)) % tokens;
    const float c = cos_table[n * 2 * half_dim + 2 * i];
    const float s = sin_table[n * 2 * half_dim + 2 * i + 1];
    const float2 v = load_pair(x + 2 * p);
    float2 r;
    r.x = __fsub_rn(__fmul_rn(v.x, c), __fmul_rn(v.y, s));
    r.y = __fadd_rn(__fmul_rn(v.x, s), __fmul_rn(v.y, c));
    store_pair(out + 2 * p, r);
  }
}

template <class T>
void launch(const RotaryArgs& a) {
  const Shape& s = a.x.shape;
  const std::int64_t pairs = s.elements() / 2;
  constexpr int kThreads = 256;
  const std::int64_t blocks = (pairs + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < 65535 * 16 ? blocks : 65535 * 16);
  rotary_kernel<T><<<grid, kThreads, 0, static_cast<cudaStream_t>(a.stream)>>>(
      static_cast<const T*>(a.x.data), static_cast<T*>(a.out.data), a.cos, a.sin, pairs, s.tokens, s.heads,
      s.head_dim / 2);
  cuda::check_cuda(cudaGetLastError(), "rotary_kernel launch");
}

}  // namespace

void apply_rotary_cuda(const RotaryArgs& a) {
  switch (a.x.dtype) {
    case DType::f32: launch<float>(a); break;
    case DType::f16: launch<__half>(a); break;
    case DType::bf16: launch<__nv_bfloat16>(a); break;
  }
}

}  // namespace dynamicrad::detail
