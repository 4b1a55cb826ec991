// plan_cuda_attention() for builds without the CUDA backend: links, and says why it cannot run.
#include "dynamicrad/cuda_attention.h"

#include "dynamicrad/error.h"

namespace dynamicrad {

std::string to_string(CudaKernel kernel) {
  switch (kernel) {
    case CudaKernel::automatic: return "automatic";
    case CudaKernel::wgmma: return "wgmma";
    case CudaKernel::mma_sync: return "mma-sync";
  }
  return "unknown";
}

std::string to_string(CudaSchedule schedule) {
  switch (schedule) {
    case CudaSchedule::head_major: return "head-major";
    case CudaSchedule::longest_first: return "longest-first";
  }
  return "unknown";
}

#if !defined(DYNAMICRAD_WITH_CUDA)
std::unique_ptr<AttentionBackend> plan_cuda_attention(const BlockLayout&, const CudaAttentionOptions&) {
  throw Error("device", "built without CUDA");
}

std::unique_ptr<CudaLayoutAttention> plan_cuda_layout_attention(const Shape&, int, const CudaAttentionOptions&) {
  throw Error("device", "built without CUDA");
}
#endif

}  // namespace dynamicrad
