// apply_rotary() on the GPU: one CTA per (batch, token) row of heads x head_dim values, 16-byte
// vectors where the row allows, float arithmetic with explicitly rounded products and sums
// (__fmul_rn / __fsub_rn / __fadd_rn are never contracted into FMAs). With the RMSNorm, the row's sum
// of squares is reduced in double first and the row is read again (from L1) to normalise and rotate.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cuda_check.cuh"
#include "dynamicrad/rotary.h"

namespace dynamicrad::detail {

namespace {

constexpr int kThreads = 128;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

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

// The row's RMSNorm factor r = float(1 / sqrt(sum x^2 / width + eps)), the sum in double.
template <class T, int kVec>
__device__ float norm_factor(const T* row, int width, double eps) {
  double sum = 0.0;
  for (int j = threadIdx.x * kVec; j < width; j += kThreads * kVec) {
    float f[kVec];
    load<T, kVec>(row + j, f);
#pragma unroll
    for (int k = 0; k < kVec; ++k) sum += static_cast<double>(f[k]) * static_cast<double>(f[k]);
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  __shared__ double partial[kThreads / 32];
  __shared__ float factor;
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < kThreads / 32; ++w) total += partial[w];
    factor = static_cast<float>(1.0 / sqrt(total / static_cast<double>(width) + eps));
  }
  __syncthreads();
  return factor;
}

template <class T, bool kNorm, int kVec>
__global__ void __launch_bounds__(kThreads)
    rotary_kernel(const T* __restrict__ x, T* __restrict__ out, const float* __restrict__ cos_table,
                  const float* __restrict__ sin_table, const float* __restrict__ weight, double eps,
                  std::int64_t tokens, int heads, int head_dim) {
  const std::int64_t row = blockIdx.x;  // batch * tokens + token
  const std::int64_t n = row % tokens;
  const int width = heads * head_dim;
  const T* x_row = x + row * width;
  T* out_row = out + row * width;
  const float* c_row = cos_table + n * head_dim;
  const float* s_row = sin_table + n * head_dim;
  float r = 1.0f;
  if constexpr (kNorm) r = norm_factor<T, kVec>(x_row, width, eps);
  for (int j = threadIdx.x * kVec; j < width; j += kThreads * kVec) {
    float f[kVec];
    load<T, kVec>(x_row + j, f);
    if constexpr (kNorm) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) f[k] = to_float(from_float<T>(__fmul_rn(__fmul_rn(f[k], r), weight[j + k])));
    }
    const int d = j % head_dim;  // kVec divides head_dim: a vector never straddles two heads
    float o[kVec];
#pragma unroll
    for (int k = 0; k < kVec; k += 2) {
      const float c = c_row[d + k];
      const float s = s_row[d + k + 1];
      o[k] = __fsub_rn(__fmul_rn(f[k], c), __fmul_rn(f[k + 1], s));
      o[k + 1] = __fadd_rn(__fmul_rn(f[k], s), __fmul_rn(f[k + 1], c));
    }
    store<T, kVec>(out_row + j, o);
  }
}

template <class T, bool kNorm, int kVec>
void launch_with(const RotaryArgs& a) {
  const Shape& s = a.x.shape;
  rotary_kernel<T, kNorm, kVec><<<static_cast<unsigned>(s.batch * s.tokens), kThreads, 0,
                                  static_cast<cudaStream_t>(a.stream)>>>(
      static_cast<const T*>(a.x.data), static_cast<T*>(a.out.data), a.cos, a.sin, a.norm_weight, a.norm_eps, s.tokens,
      static_cast<int>(s.heads), static_cast<int>(s.head_dim));
  cuda::check_cuda(cudaGetLastError(), "rotary_kernel launch");
}

template <class T, bool kNorm>
void launch(const RotaryArgs& a) {
  constexpr int kWide = 16 / static_cast<int>(sizeof(T));
  const auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  if (a.x.shape.head_dim % kWide == 0 && aligned(a.x.data) && aligned(a.out.data)) {
    launch_with<T, kNorm, kWide>(a);
  } else {
    launch_with<T, kNorm, 2>(a);
  }
}

template <class T>
void launch(const RotaryArgs& a) {
  if (a.norm_weight != nullptr) {
    launch<T, true>(a);
  } else {
    launch<T, false>(a);
  }
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
