#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/cuda_check.cuh"
#include "cuda/device_stats.cuh"

namespace dynamicrad::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ double load(const float* p, std::int64_t i) { return p[i]; }
__device__ __forceinline__ double load(const __half* p, std::int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ double load(const __nv_bfloat16* p, std::int64_t i) { return __bfloat162float(p[i]); }

// Sums a CTA's three values in a fixed tree order (shared memory, halving strides).
__device__ void block_sum(double (&values)[3], double* shared) {
  for (int v = 0; v < 3; ++v) shared[v * kThreads + threadIdx.x] = values[v];
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      for (int v = 0; v < 3; ++v) shared[v * kThreads + threadIdx.x] += shared[v * kThreads + threadIdx.x + stride];
    }
    __syncthreads();
  }
  for (int v = 0; v < 3; ++v) values[v] = shared[v * kThreads];
}

// Each CTA strides over the elements and writes its three partial sums to partials[3][kStatsBlocks].
template <class T>
__global__ void partial_kernel(const T* __restrict__ approx, const T* __restrict__ exact, std::int64_t count,
                               double* partials) {
  __shared__ double shared[3 * kThreads];
  double values[3] = {0.0, 0.0, 0.0};
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kThreads;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < count; i += stride) {
    const double e = load(exact, i);
    const double d = load(approx, i) - e;
    values[0] += d * d;
    values[1] += e;
    values[2] += e * e;
  }
  block_sum(values, shared);
  if (threadIdx.x == 0) {
    for (int v = 0; v < 3; ++v) partials[v * kStatsBlocks + blockIdx.x] = values[v];
  }
}

// One CTA adds the partials in a fixed order into partials[3 * kStatsBlocks + v].
__global__ void final_kernel(double* partials) {
  __shared__ double shared[3 * kThreads];
  double values[3] = {0.0, 0.0, 0.0};
  for (int i = threadIdx.x; i < kStatsBlocks; i += kThreads) {
    for (int v = 0; v < 3; ++v) values[v] += partials[v * kStatsBlocks + i];
  }
  block_sum(values, shared);
  if (threadIdx.x == 0) {
    for (int v = 0; v < 3; ++v) partials[3 * kStatsBlocks + v] = values[v];
  }
}

}  // namespace

DiffStats diff_stats(const void* approx, const void* exact, DType dtype, std::int64_t count, void* scratch,
                     cudaStream_t stream) {
  auto* partials = static_cast<double*>(scratch);
  switch (dtype) {
    case DType::f32:
      partial_kernel<<<kStatsBlocks, kThreads, 0, stream>>>(static_cast<const float*>(approx),
                                                             static_cast<const float*>(exact), count, partials);
      break;
    case DType::f16:
      partial_kernel<<<kStatsBlocks, kThreads, 0, stream>>>(static_cast<const __half*>(approx),
                                                             static_cast<const __half*>(exact), count, partials);
      break;
    case DType::bf16:
      partial_kernel<<<kStatsBlocks, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(approx),
                                                             static_cast<const __nv_bfloat16*>(exact), count, partials);
      break;
  }
  check_cuda(cudaGetLastError(), "diff_stats partial_kernel launch");
  final_kernel<<<1, kThreads, 0, stream>>>(partials);
  check_cuda(cudaGetLastError(), "diff_stats final_kernel launch");
  double sums[3];
  check_cuda(cudaMemcpyAsync(sums, partials + 3 * kStatsBlocks, sizeof sums, cudaMemcpyDeviceToHost, stream),
             "cudaMemcpyAsync (diff_stats)");
  check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize (diff_stats)");
  return DiffStats{sums[0], sums[1], sums[2]};
}

}  // namespace dynamicrad::cuda
