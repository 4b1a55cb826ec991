// Which devices this build can use.
#pragma once

namespace dynamicrad {

// True when the library was built with the CUDA backend.
constexpr bool built_with_cuda() {
#if defined(DYNAMICRAD_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

// Number of CUDA devices visible at run time; 0 without the CUDA backend or without a GPU.
int cuda_device_count();

}  // namespace dynamicrad
