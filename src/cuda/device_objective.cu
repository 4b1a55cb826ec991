// DeviceObjective (src/tune/device_objective.h): the tuner's objective on the CUDA engine.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "cuda/cuda_check.cuh"
#include "cuda/device_memory.cuh"
#include "cuda/device_stats.cuh"
#include "dynamicrad/cuda_attention.h"
#include "dynamicrad/cuda_mask.h"
#include "dynamicrad/error.h"
#include "tune/device_objective.h"

namespace dynamicrad {

using cuda::check_cuda;

namespace {

// A device buffer freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes) { check_cuda(cudaMalloc(&ptr_, bytes), "cudaMalloc (objective)"); }
  ~DeviceBuffer() { cuda::DeviceFree{}(ptr_); }
  DeviceBuffer(DeviceBuffer&& other) noexcept : ptr_(other.ptr_) { other.ptr_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(ptr_, other.ptr_);
    return *this;
  }
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
};

// Uploads a host tensor as bf16 (the conversion runs on every CPU thread).
DeviceBuffer upload_bf16(const HostTensor& t) {
  const std::int64_t n = t.shape().elements();
  std::vector<std::uint16_t> bits(static_cast<std::size_t>(n));
  constexpr std::int64_t kChunk = 1 << 20;
  detail::parallel_for((n + kChunk - 1) / kChunk, detail::resolve_threads(0), [&](std::int64_t chunk, int) {
    const std::int64_t end = std::min(n, (chunk + 1) * kChunk);
    for (std::int64_t i = chunk * kChunk; i < end; ++i) bits[static_cast<std::size_t>(i)] = float_to_bfloat16(t.get(i));
  });
  DeviceBuffer buffer(bits.size() * sizeof(std::uint16_t));
  check_cuda(cudaMemcpy(buffer.get(), bits.data(), bits.size() * sizeof(std::uint16_t), cudaMemcpyHostToDevice),
             "cudaMemcpy (objective upload)");
  return buffer;
}

}  // namespace

struct DeviceObjective::State {
  VideoGeometry geometry;
  Shape shape;
  DeviceBuffer q, k, v, dense, sparse, scratch;
  double dense_variance = 0.0;
  double dense_sq = 0.0;
  CudaAttentionOptions attention;

  ConstTensor view(const DeviceBuffer& b) const { return ConstTensor{b.get(), DType::bf16, shape}; }
  MutableTensor mutable_view(const DeviceBuffer& b) const { return MutableTensor{b.get(), DType::bf16, shape}; }

  void run(const BlockLayout& layout, const DeviceBuffer& out) const {
    const auto backend = plan_cuda_attention(layout, attention);
    backend->run(AttentionArgs{view(q), view(k), view(v), mutable_view(out), nullptr, nullptr});
    check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize (objective attention)");
  }
};

DeviceObjective::DeviceObjective(const SyntheticQkv& qkv, const VideoGeometry& geometry)
    : state_(std::make_unique<State>()) {
  validate(geometry);
  State& s = *state_;
  s.geometry = geometry;
  s.shape = qkv.q.shape();
  if (s.shape != Shape{geometry.batch, total_tokens(geometry), geometry.heads, geometry.head_dim}) {
    throw Error("qkv", "shape " + to_string(s.shape) + " does not match the geometry");
  }
  s.attention.dtype = DType::bf16;
  s.attention.head_dim = geometry.head_dim;
  s.q = upload_bf16(qkv.q);
  s.k = upload_bf16(qkv.k);
  s.v = upload_bf16(qkv.v);
  const std::size_t bytes = static_cast<std::size_t>(s.shape.elements()) * sizeof(std::uint16_t);
  s.dense = DeviceBuffer(bytes);
  s.sparse = DeviceBuffer(bytes);
  s.scratch = DeviceBuffer(cuda::kStatsScratchBytes);
  s.run(full_layout(s.shape.batch, s.shape.heads, s.shape.tokens, geometry.block_size), s.dense);
  // Statistics of the dense output: compare it with itself to get its sum and sum of squares.
  const cuda::DiffStats stats = cuda::diff_stats(s.dense.get(), s.dense.get(), DType::bf16, s.shape.elements(),
                                                 s.scratch.get(), nullptr);
  const double n = static_cast<double>(s.shape.elements());
  const double mean = stats.exact_sum / n;
  s.dense_sq = stats.exact_sq;
  s.dense_variance = stats.exact_sq / n - mean * mean;
  if (!(s.dense_variance > 0.0)) {
    throw Error("objective", "the dense attention output has zero variance; nothing to compare");
  }
}

DeviceObjective::~DeviceObjective() = default;

double DeviceObjective::dense_variance() const { return state_->dense_variance; }

BlockLayout DeviceObjective::select(const RadialPrior& prior, const SelectionParams& selection) const {
  const State& s = *state_;
  CudaMaskBuilder builder(prior, s.shape.batch, s.shape.heads, s.shape.head_dim);
  builder.build(s.view(s.q), s.view(s.k), selection, nullptr);
  return builder.download(nullptr);
}

double DeviceObjective::sparsity(const RadialPrior& prior, const SelectionParams& selection) const {
  const State& s = *state_;
  CudaMaskBuilder builder(prior, s.shape.batch, s.shape.heads, s.shape.head_dim);
  builder.build(s.view(s.q), s.view(s.k), selection, nullptr);
  const double grid = static_cast<double>(prior.blocks) * static_cast<double>(prior.blocks) *
                      static_cast<double>(s.shape.batch * s.shape.heads);
  return 1.0 - static_cast<double>(builder.kept_blocks(nullptr)) / grid;
}

DeviceEvaluation DeviceObjective::evaluate(const BlockLayout& layout) const {
  const State& s = *state_;
  s.run(layout, s.sparse);
  const cuda::DiffStats stats = cuda::diff_stats(s.sparse.get(), s.dense.get(), DType::bf16, s.shape.elements(),
                                                 s.scratch.get(), nullptr);
  DeviceEvaluation e;
  e.mse = stats.diff_sq / static_cast<double>(s.shape.elements());
  e.relative_l2 = std::sqrt(stats.diff_sq / s.dense_sq);
  return e;
}

}  // namespace dynamicrad
