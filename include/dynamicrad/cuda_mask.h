// GPU mask builder: pooled block scores, candidate scoring and both selection modes on the device,
// writing the CSR block layout directly (PAPER.md parts 1-2 on the GPU).
//
// It computes exactly what pool_blocks() + select_blocks() compute on the CPU (select.h): pooling
// sums tokens in ascending order in float, scores use block_score()'s fixed double order, ranks and
// the dynamic-threshold denominator follow the CPU's order; so the layouts are identical on the same
// inputs (up to a dynamic-threshold mass equal to tau within the last bit of exp()).
//
// Plan/run: the constructor copies the prior to the device and allocates every buffer; build()
// launches three kernels and a scan on the given stream, allocates nothing and does not synchronise
// (CUDA-graph capturable). The layout stays on the device for the attention backend.
//
// Without the CUDA backend the constructor throws Error("device", "built without CUDA").
#pragma once

#include <cstdint>
#include <memory>

#include "dynamicrad/layout.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"
#include "dynamicrad/tensor.h"

namespace dynamicrad {

// A layout that lives on the device. Row r = (b * heads + h) * blocks + q_block as in BlockLayout.
struct DeviceLayoutView {
  std::int64_t batch = 0;
  std::int64_t heads = 0;
  std::int64_t tokens = 0;
  int block_size = 0;
  std::int64_t blocks = 0;
  const std::int64_t* row_offsets = nullptr;  // device, [batch * heads * blocks + 1]
  const std::int32_t* col_indices = nullptr;  // device, [row_offsets[rows]] (capacity: batch * heads * prior size)
};

// What a build leaves for later inspection without a synchronisation per build.
struct MaskBuildStatus {
  std::int64_t kept = 0;   // block pairs kept (all rows)
  int non_finite = 0;      // bit 0: Q held NaN or Inf, bit 1: K did
};

// Throws Error("q" / "k", ...) when the status records non-finite inputs.
void check_status(const MaskBuildStatus& status);

// Copies a device layout to the host (synchronous copies; the caller has synchronised the stream
// that wrote it).
BlockLayout to_host(const DeviceLayoutView& v);

class CudaMaskBuilder {
 public:
  // batch, heads, head_dim: the shape of the Q/K the builder will see.
  CudaMaskBuilder(const RadialPrior& prior, std::int64_t batch, std::int64_t heads, std::int64_t head_dim);
  ~CudaMaskBuilder();
  CudaMaskBuilder(const CudaMaskBuilder&) = delete;
  CudaMaskBuilder& operator=(const CudaMaskBuilder&) = delete;

  // q, k: device pointers, [batch, tokens, heads, head_dim] f32 / f16 / bf16 (same dtype), in the
  // prior's sequence order. stream: a cudaStream_t or nullptr. Throws Error on a shape mismatch or
  // bad params (checked on the host, before any launch).
  // `pooled`: device means of the first pooled.blocks blocks (select.h), adopted instead of pooling
  // them (a NaN or Inf among them is reported as one in Q or K).
  void build(const ConstTensor& q, const ConstTensor& k, const SelectionParams& params, void* stream,
             const PooledPrefix& pooled = {});

  // The layout of the last build (device memory owned by the builder).
  DeviceLayoutView device_layout() const;

  // Synchronises `stream` and copies the last layout to the host. Throws Error("q" / "k", ...) when
  // the last build met NaN or Inf in Q or K.
  BlockLayout download(void* stream) const;

  // Synchronises `stream` and returns the number of block pairs the last build kept (all rows),
  // copying 8 bytes instead of the layout. Throws like download().
  std::int64_t kept_blocks(void* stream) const;

  // Queues on `stream` the copy of the last build's status into `status` (pinned host memory, so the
  // copy is asynchronous); it is valid once the stream has passed this point.
  void copy_status_async(MaskBuildStatus* status, void* stream) const;

  // Device memory the builder holds, in bytes (allocated by the constructor, freed by the
  // destructor on the builder's device whatever device is current then).
  std::int64_t device_bytes() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace dynamicrad
