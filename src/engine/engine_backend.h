// The device half of SparseAttentionEngine (engine.h): one implementation per device. engine.cpp
// checks slots, shapes against the geometry and the selection parameters before calling in.
#pragma once

#include <memory>

#include "dynamicrad/engine.h"

namespace dynamicrad {

class SparseAttentionEngine::Backend {
 public:
  virtual ~Backend() = default;
  virtual void select(const ConstTensor& q, const ConstTensor& k, const SelectionParams& params, int slot,
                      void* stream, const PooledPrefix& pooled) = 0;
  virtual void attend(const AttentionArgs& args, int slot) const = 0;
  virtual void attend_dense(const AttentionArgs& args) const = 0;
  virtual KeptBlocks kept(int slot, void* stream) const = 0;
  virtual BlockLayout layout(int slot, void* stream) const = 0;
  virtual std::int64_t device_bytes() const = 0;
};

namespace detail {

// The CPU engine: pool_blocks + select_blocks (select.h) and the CPU block-sparse backend.
std::unique_ptr<SparseAttentionEngine::Backend> make_cpu_engine(const RadialPrior& prior,
                                                                const EngineOptions& options);

// The CUDA engine: CudaMaskBuilder and block-sparse attention straight from the device layout.
// Throws Error("device", "built without CUDA") in builds without the CUDA backend.
std::unique_ptr<SparseAttentionEngine::Backend> make_cuda_engine(const RadialPrior& prior,
                                                                 const EngineOptions& options);

// The error for attend()/layout() on a slot whose shared layout buffer holds another slot's layout.
[[noreturn]] void throw_replaced_slot(int slot, int current);

}  // namespace detail
}  // namespace dynamicrad
