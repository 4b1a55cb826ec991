// cuda_device_count() for builds without the CUDA backend.
#include "dynamicrad/device.h"

#if !defined(DYNAMICRAD_WITH_CUDA)
namespace dynamicrad {
int cuda_device_count() { return 0; }
}  // namespace dynamicrad
#endif
