// Deterministic device reductions for the tuner's objective on the GPU: sums of squared differences
// between two tensors and the sum / sum of squares of the reference, in double.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "dynamicrad/tensor.h"

namespace dynamicrad::cuda {

struct DiffStats {
  double diff_sq = 0.0;    // sum (approx - exact)^2
  double exact_sum = 0.0;  // sum exact
  double exact_sq = 0.0;   // sum exact^2
};

// Scratch the reduction needs (device memory, allocated once by the caller).
constexpr int kStatsBlocks = 1024;
constexpr std::size_t kStatsScratchBytes = 3 * (kStatsBlocks + 1) * sizeof(double);

// approx, exact: device tensors of `count` elements of `dtype`. Fixed grid and fixed reduction
// order, so the result is the same bits on every run. Synchronises `stream` to return the sums.
DiffStats diff_stats(const void* approx, const void* exact, DType dtype, std::int64_t count, void* scratch,
                     cudaStream_t stream);

}  // namespace dynamicrad::cuda
