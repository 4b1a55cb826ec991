// DeviceObjective for builds without the CUDA backend: construction says so.
#include "tune/device_objective.h"

#if !defined(DYNAMICRAD_WITH_CUDA)
#include "dynamicrad/error.h"

namespace dynamicrad {

struct DeviceObjective::State {};

DeviceObjective::DeviceObjective(const SyntheticQkv&, const VideoGeometry&) {
  throw Error("device", "cuda was asked for, but this build has no CUDA backend");
}
DeviceObjective::~DeviceObjective() = default;
double DeviceObjective::dense_variance() const { return 0.0; }
BlockLayout DeviceObjective::select(const RadialPrior&, const SelectionParams&) const { return {}; }
DeviceEvaluation DeviceObjective::evaluate(const BlockLayout&) const { return {}; }
double DeviceObjective::sparsity(const RadialPrior&, const SelectionParams&) const { return 0.0; }

}  // namespace dynamicrad
#endif
