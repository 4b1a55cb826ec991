// Devices and their memory: which device a pointer lives on, a guard that makes a device current,
// and deleters that free in the context of the memory's own device. A pipeline on cuda:1 calls and
// drops DynamicRad's objects while cuda:0 may be current, so nothing here relies on the current
// device.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "cuda/cuda_check.cuh"
#include "dynamicrad/error.h"

namespace dynamicrad::cuda {

// The device whose memory (device or managed) `p` points into. Throws Error(name, ...) for host or
// unregistered memory; `who` names the caller in that message ("the CUDA engine").
inline int device_of(const void* p, const std::string& name, const std::string& who) {
  cudaPointerAttributes attributes{};
  const cudaError_t status = cudaPointerGetAttributes(&attributes, p);
  if (status != cudaSuccess) cudaGetLastError();  // clear the error of an unregistered host pointer
  const bool on_device = status == cudaSuccess &&
                         (attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged);
  if (!on_device) throw Error(name, "is not device memory: " + who + " takes tensors on the GPU");
  return attributes.device;
}

// Throws Error(name, ...) unless `p` is device memory of `device`.
inline void require_device_memory(const void* p, const std::string& name, int device, const std::string& who) {
  const int actual = device_of(p, name, who);
  if (actual != device) {
    throw Error(name, "lives on device " + std::to_string(actual) + ", " + who + " runs on device " + std::to_string(device));
  }
}

// Makes `device` current for the guard's lifetime (nothing to do when it already is).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (device != previous_) {
      check_cuda(cudaSetDevice(device), "cudaSetDevice");
      switched_ = true;
    }
  }
  ~DeviceGuard() {
    if (switched_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

// Calls free(p) with p's device current, then restores the caller's device. Never throws (it runs in
// destructors); a failed free is left to the CUDA runtime's error state.
template <typename Free>
void free_on_owner(void* p, Free free) noexcept {
  if (p == nullptr) return;
  cudaPointerAttributes attributes{};
  int current = -1;
  const bool known = cudaPointerGetAttributes(&attributes, p) == cudaSuccess && cudaGetDevice(&current) == cudaSuccess;
  const bool switched = known && attributes.device >= 0 && attributes.device != current &&
                        cudaSetDevice(attributes.device) == cudaSuccess;
  free(p);
  if (switched) cudaSetDevice(current);
}

struct DeviceFree {
  void operator()(void* p) const noexcept { free_on_owner(p, [](void* q) { cudaFree(q); }); }
};

struct PinnedFree {
  void operator()(void* p) const noexcept { free_on_owner(p, [](void* q) { cudaFreeHost(q); }); }
};

}  // namespace dynamicrad::cuda
