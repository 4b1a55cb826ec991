// The CUDA engine for builds without the CUDA backend: says why it cannot run.
#if !defined(DYNAMICRAD_WITH_CUDA)
#include "dynamicrad/error.h"
#include "engine/engine_backend.h"

namespace dynamicrad::detail {

std::unique_ptr<SparseAttentionEngine::Backend> make_cuda_engine(const RadialPrior&, const EngineOptions&) {
  throw Error("device", "built without CUDA: the CUDA engine is not available");
}

}  // namespace dynamicrad::detail
#endif
