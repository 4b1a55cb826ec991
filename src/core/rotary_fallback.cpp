// apply_rotary() on Device::cuda in builds without the CUDA backend: says why it cannot run.
#if !defined(DYNAMICRAD_WITH_CUDA)
#include "dynamicrad/error.h"
#include "dynamicrad/rotary.h"

namespace dynamicrad::detail {

void apply_rotary_cuda(const RotaryArgs&) { throw Error("device", "built without CUDA"); }

}  // namespace dynamicrad::detail
#endif
