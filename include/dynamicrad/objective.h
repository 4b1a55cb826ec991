// The tuner's objective (PAPER.md part 3) on the CPU engine:
//   loss = MSE(sparse, dense) / var(dense) + penalty * max(0, target_sparsity - sparsity)
// where dense is the proxy scene's attention output (the CPU backend with every block kept, or the
// double-precision reference), sparse is the CPU backend on the layout the parameters select,
// var is the variance of all dense output elements around their mean and sparsity is the layout's
// block sparsity (layout_stats). The scene, its pooled blocks and the dense output are computed
// once, when the objective is built; each evaluation builds the prior, selects and runs sparse
// attention.
#pragma once

#include <cstdint>
#include <memory>

#include "dynamicrad/attention.h"
#include "dynamicrad/geometry.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/motion.h"
#include "dynamicrad/proxy.h"
#include "dynamicrad/tune_space.h"

namespace dynamicrad {

enum class DenseOracle { cpu_full_layout, reference };

struct ObjectiveOptions {
  VideoGeometry geometry;
  MotionRegime regime = MotionRegime::mid;
  SceneKind scene = SceneKind::physics;
  std::uint64_t scene_seed = 1;
  double target_sparsity = 0.80;  // [0, 1)
  double penalty = 10.0;          // loss per unit of sparsity under the target, [0, 1e6]
  int threads = 0;                // CPU threads for attention; 0 = all
  DenseOracle dense = DenseOracle::cpu_full_layout;
  // cuda: the scene runs on the GPU in bf16: layouts from the GPU mask builder, dense and sparse
  // outputs from the CUDA attention kernel (needs block 64 or 128 and head_dim 64 or 128); `dense`
  // and `threads` do not apply. Throws Error("device", ...) without the CUDA backend.
  Device device = Device::cpu;
};

// Throws Error naming the field and its allowed range.
void validate(const ObjectiveOptions& options);

// penalty * max(0, target - sparsity).
double sparsity_penalty(double sparsity, double target, double penalty);

struct Evaluation {
  double loss = 0.0;
  double error = 0.0;        // MSE(sparse, dense) / var(dense)
  double sparsity = 0.0;     // block sparsity of the layout
  double relative_l2 = 0.0;  // ||sparse - dense|| / ||dense||
  double seconds = 0.0;      // wall time of the evaluation
};

class DeviceObjective;

// What the tuner evaluates, whatever runs it: ProxyObjective below on the CPU engine; another
// backend implements the same three calls on the same definitions.
class TuneObjective {
 public:
  virtual ~TuneObjective() = default;
  // The loss of a parameter set (builds the layout and runs sparse attention).
  virtual Evaluation evaluate(const TunedParams& params) const = 0;
  // The block sparsity of the layout alone: a mask build, no attention (cheap).
  virtual double sparsity(const TunedParams& params) const = 0;
  // Time spent building the scene and its dense output.
  virtual double setup_seconds() const = 0;
};

class ProxyObjective : public TuneObjective {
 public:
  // Generates the scene and the dense output (the expensive part, once).
  explicit ProxyObjective(const ObjectiveOptions& options);

  const ObjectiveOptions& options() const { return options_; }
  double setup_seconds() const override { return setup_seconds_; }

  // The layout the parameters select on this scene (radial-prior: the prior alone).
  BlockLayout layout_for(const TunedParams& params) const;
  Evaluation evaluate(const TunedParams& params) const override;
  double sparsity(const TunedParams& params) const override;
  Evaluation evaluate_layout(const BlockLayout& layout) const;

 private:
  ObjectiveOptions options_;
  SyntheticQkv qkv_;
  PooledBlocks pooled_;
  HostTensor dense_;
  std::shared_ptr<const DeviceObjective> device_;  // set for Device::cuda
  double dense_variance_ = 0.0;
  double setup_seconds_ = 0.0;
};

}  // namespace dynamicrad
