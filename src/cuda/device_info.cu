// CUDA runtime queries used by the front ends to report which backends can run.
#include <cuda_runtime.h>

#include "dynamicrad/device.h"

namespace dynamicrad {

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return count;
}

}  // namespace dynamicrad
