// Turns CUDA runtime errors into dynamicrad::Error("cuda", ...): the library never exits.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "dynamicrad/error.h"

namespace dynamicrad::cuda {

inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw Error("cuda", std::string(what) + ": " + cudaGetErrorName(status) + " (" +
                            cudaGetErrorString(status) + ")");
  }
}

}  // namespace dynamicrad::cuda
