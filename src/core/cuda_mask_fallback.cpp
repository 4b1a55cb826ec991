// CudaMaskBuilder for builds without the CUDA backend: every entry point says so.
#include "dynamicrad/cuda_mask.h"

#if !defined(DYNAMICRAD_WITH_CUDA)
#include "dynamicrad/error.h"

namespace dynamicrad {

struct CudaMaskBuilder::State {};

CudaMaskBuilder::CudaMaskBuilder(const RadialPrior&, std::int64_t, std::int64_t, std::int64_t) {
  throw Error("device", "built without CUDA: the GPU mask builder is not available");
}
CudaMaskBuilder::~CudaMaskBuilder() = default;
void CudaMaskBuilder::build(const ConstTensor&, const ConstTensor&, const SelectionParams&, void*, const PooledPrefix&) {}
DeviceLayoutView CudaMaskBuilder::device_layout() const { return {}; }
BlockLayout CudaMaskBuilder::download(void*) const { return {}; }
std::int64_t CudaMaskBuilder::kept_blocks(void*) const { return 0; }
void CudaMaskBuilder::copy_status_async(MaskBuildStatus*, void*) const {}
void check_status(const MaskBuildStatus& status) {
  if (status.non_finite & 1) throw Error("q", "holds NaN or Inf: inputs must be finite");
  if (status.non_finite & 2) throw Error("k", "holds NaN or Inf: inputs must be finite");
}

}  // namespace dynamicrad
#endif
