// The GPU half of the tuner's objective (objective.h with device cuda): the proxy scene lives on the
// GPU in bf16, the dense output comes from the CUDA kernel with every block kept, layouts are built
// by the GPU mask builder and sparse attention runs on the CUDA kernel. Only scalars and layouts
// come back to the host.
#pragma once

#include <memory>

#include "dynamicrad/geometry.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"
#include "dynamicrad/synthetic.h"

namespace dynamicrad {

struct DeviceEvaluation {
  double mse = 0.0;            // mean (sparse - dense)^2
  double relative_l2 = 0.0;    // ||sparse - dense|| / ||dense||
};

class DeviceObjective {
 public:
  // Uploads Q/K/V (as bf16) and computes the dense output and its variance. Needs block_size 128
  // (or 64) and head_dim 64 or 128 (the CUDA kernels'); throws Error otherwise, and
  // Error("device", ...) without the CUDA backend.
  DeviceObjective(const SyntheticQkv& qkv, const VideoGeometry& geometry);
  ~DeviceObjective();
  DeviceObjective(const DeviceObjective&) = delete;
  DeviceObjective& operator=(const DeviceObjective&) = delete;

  double dense_variance() const;
  // The layout of `selection` inside `prior` on this scene, built on the GPU.
  BlockLayout select(const RadialPrior& prior, const SelectionParams& selection) const;
  // Block sparsity of that layout, without copying it back (1 - kept / (batch * heads * blocks^2)).
  double sparsity(const RadialPrior& prior, const SelectionParams& selection) const;
  // Sparse attention on `layout` against the dense output.
  DeviceEvaluation evaluate(const BlockLayout& layout) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace dynamicrad
