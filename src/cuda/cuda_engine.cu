// The CUDA engine: selection with CudaMaskBuilder, attention straight from the device layout
// (plan_cuda_layout_attention), per-slot status copied asynchronously into pinned host memory so
// that reporting needs no synchronisation per call.
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/check.h"
#include "cuda/cuda_check.cuh"
#include "cuda/device_memory.cuh"
#include "dynamicrad/cuda_attention.h"
#include "dynamicrad/cuda_mask.h"
#include "engine/engine_backend.h"

namespace dynamicrad::detail {

namespace {

using cuda::check_cuda;
using cuda::DeviceFree;
using cuda::PinnedFree;

// A slot's own copy of a layout (keep_layouts), grown when a layout needs more room.
struct KeptLayout {
  DeviceLayoutView view;
  std::unique_ptr<std::int64_t, DeviceFree> row_offsets;
  std::unique_ptr<std::int32_t, DeviceFree> col_indices;
  std::int64_t rows_capacity = 0;
  std::int64_t cols_capacity = 0;
};

// The mask builder's and pooling's grids put the batch in a grid dimension of at most 65535 blocks.
void require_cuda_batch(std::int64_t batch, const std::string& name) {
  require(batch <= 65535, name + ".batch", std::to_string(batch) + ": the CUDA engine takes at most 65535");
}

class CudaEngine final : public SparseAttentionEngine::Backend {
 public:
  CudaEngine(const RadialPrior& prior, const EngineOptions& options)
      : prior_(prior), options_(options), slots_(static_cast<std::size_t>(options.slots)),
        kept_(static_cast<std::size_t>(options.keep_layouts ? options.slots : 0)) {
    require(options.cuda_device >= -1, "options.cuda_device",
            std::to_string(options.cuda_device) + ": must be >= 0, or -1 for the current device");
    device_ = options.cuda_device;
    if (device_ < 0) check_cuda(cudaGetDevice(&device_), "cudaGetDevice");
    int count = 0;
    check_cuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    require(device_ < count, "options.cuda_device",
            std::to_string(device_) + ": allowed range [0, " + std::to_string(count - 1) + "]");
    const int block = prior.geometry.block_size;
    require(block == 64 || block == 128, "geometry.block_size",
            std::to_string(block) + ": the CUDA engine takes 64 or 128");
    require(prior.geometry.head_dim == 64 || prior.geometry.head_dim == 128, "geometry.head_dim",
            std::to_string(prior.geometry.head_dim) + ": the CUDA engine takes 64 or 128");
    cuda::DeviceGuard guard(device_);
    MaskBuildStatus* status = nullptr;
    check_cuda(cudaMallocHost(&status, sizeof(MaskBuildStatus) * slots_.size()), "cudaMallocHost (slot status)");
    status_.reset(status);
    for (std::size_t i = 0; i < slots_.size(); ++i) status_.get()[i] = MaskBuildStatus{};
  }

  void select(const ConstTensor& q, const ConstTensor& k, const SelectionParams& params, int slot,
              void* stream, const PooledPrefix& pooled) override {
    require_cuda_batch(q.shape.batch, "q");
    // Host pointers handed to a kernel would fault and poison the context: refuse them up front.
    const char* who = "the CUDA engine";
    cuda::require_device_memory(q.data, "q", device_, who);
    cuda::require_device_memory(k.data, "k", device_, who);
    if (pooled.blocks > 0) {
      cuda::require_device_memory(pooled.q, "pooled_q", device_, who);
      cuda::require_device_memory(pooled.k, "pooled_k", device_, who);
    }
    cuda::DeviceGuard guard(device_);
    // A select() that throws leaves its slot without a layout; and without kept layouts, a build
    // into the shared buffers of a batch may have overwritten the current slot's layout half-way.
    SlotInfo& info = slots_[slot];
    info.selected = false;
    if (!options_.keep_layouts && current_batch_ == q.shape.batch) current_slot_ = -1;
    PerBatch& b = per_batch(q.shape.batch);
    b.builder->build(q, k, params, stream, pooled);
    // The status copy reads the builder's last row offset and flags; it must land before a later
    // build on another stream overwrites them, which stream order guarantees for one stream.
    b.builder->copy_status_async(&status_.get()[slot], stream);
    if (options_.keep_layouts) {
      keep(b, slot, stream);
    } else {
      current_slot_ = slot;
      current_batch_ = q.shape.batch;
    }
    info.batch = q.shape.batch;
    info.selected = true;
  }

  void attend(const AttentionArgs& args, int slot) const override {
    const DeviceLayoutView view = slot_view(slot);
    require(args.q.shape.batch == view.batch, "q",
            "batch " + std::to_string(args.q.shape.batch) + " differs from the batch " + std::to_string(view.batch) +
                " slot " + std::to_string(slot) + "'s layout was selected for");
    cuda::DeviceGuard guard(device_);
    attention_plan(args).run(args, view);
  }

  void attend_dense(const AttentionArgs& args) const override {
    require_cuda_batch(args.q.shape.batch, "q");
    cuda::DeviceGuard guard(device_);
    attention_plan(args).run_dense(args);
  }

  KeptBlocks kept(int slot, void*) const override {
    const SlotInfo& info = slots_[slot];
    require(info.selected, "slot", std::to_string(slot) + ": no layout was selected for it yet");
    cuda::DeviceGuard guard(device_);
    check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize (slot status)");
    const MaskBuildStatus& status = status_.get()[slot];
    check_status(status);
    return KeptBlocks{status.kept, info.batch * prior_.geometry.heads * prior_.blocks * prior_.blocks};
  }

  BlockLayout layout(int slot, void* stream) const override {
    const DeviceLayoutView v = slot_view(slot);
    cuda::DeviceGuard guard(device_);
    // The select() may have run on any stream (torch's side streams do not wait for the default
    // one): wait for the whole device, as kept() does.
    (void)stream;
    check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize (layout)");
    check_status(status_.get()[slot]);
    return to_host(v);
  }

  // What the engine allocated itself (builders, attention plans, kept layouts), counted at
  // allocation: other users of the device do not enter it.
  std::int64_t device_bytes() const override {
    std::int64_t bytes = 0;
    for (const auto& b : batches_) bytes += b.second.builder->device_bytes();
    for (const auto& a : attention_) bytes += a.second->device_bytes();
    for (const KeptLayout& k : kept_) {
      bytes += k.rows_capacity * static_cast<std::int64_t>(sizeof(std::int64_t)) +
               k.cols_capacity * static_cast<std::int64_t>(sizeof(std::int32_t));
    }
    return bytes;
  }

 private:
  // The attention plan for args' batch and dtype, made on first use (the caller holds the device
  // guard), after the dtype check; the plan's run() checks the tensors' memory.
  const CudaLayoutAttention& attention_plan(const AttentionArgs& args) const {
    require(args.q.dtype == DType::f16 || args.q.dtype == DType::bf16, "q",
            "dtype " + to_string(args.q.dtype) + ": CUDA attention takes f16 or bf16");
    const std::int64_t batch = args.q.shape.batch;
    std::unique_ptr<CudaLayoutAttention>& plan = attention_[{batch, args.q.dtype}];
    if (!plan) {
      const VideoGeometry& g = prior_.geometry;
      CudaAttentionOptions o;
      o.scale = options_.scale;
      o.head_dim = g.head_dim;
      o.device = device_;
      o.dtype = args.q.dtype;
      plan = plan_cuda_layout_attention(Shape{batch, total_tokens(g), g.heads, g.head_dim}, g.block_size, o);
    }
    return *plan;
  }

  struct PerBatch {
    std::unique_ptr<CudaMaskBuilder> builder;
  };

  struct SlotInfo {
    bool selected = false;
    std::int64_t batch = 0;
  };

  PerBatch& per_batch(std::int64_t batch) {
    auto it = batches_.find(batch);
    if (it != batches_.end()) return it->second;
    const VideoGeometry& g = prior_.geometry;
    PerBatch b;
    b.builder = std::make_unique<CudaMaskBuilder>(prior_, batch, g.heads, g.head_dim);
    return batches_.emplace(batch, std::move(b)).first->second;
  }

  void keep(const PerBatch& b, int slot, void* stream) {
    const DeviceLayoutView src = b.builder->device_layout();
    const auto s = static_cast<cudaStream_t>(stream);
    // The copy needs the kept count on the host: wait for this build only.
    check_cuda(cudaStreamSynchronize(s), "cudaStreamSynchronize (keep layout)");
    const MaskBuildStatus& status = status_.get()[slot];
    check_status(status);
    KeptLayout& dst = kept_[slot];
    const std::int64_t rows = src.batch * src.heads * src.blocks;
    if (dst.rows_capacity < rows + 1) {
      std::int64_t* p = nullptr;
      check_cuda(cudaMalloc(&p, static_cast<std::size_t>(rows + 1) * sizeof(std::int64_t)), "cudaMalloc (kept layout)");
      dst.row_offsets.reset(p);
      dst.rows_capacity = rows + 1;
    }
    if (dst.cols_capacity < status.kept) {
      std::int32_t* p = nullptr;
      check_cuda(cudaMalloc(&p, static_cast<std::size_t>(status.kept) * sizeof(std::int32_t)), "cudaMalloc (kept layout)");
      dst.col_indices.reset(p);
      dst.cols_capacity = status.kept;
    }
    check_cuda(cudaMemcpyAsync(dst.row_offsets.get(), src.row_offsets, static_cast<std::size_t>(rows + 1) * sizeof(std::int64_t),
                               cudaMemcpyDeviceToDevice, s),
               "cudaMemcpyAsync (kept layout)");
    check_cuda(cudaMemcpyAsync(dst.col_indices.get(), src.col_indices, static_cast<std::size_t>(status.kept) * sizeof(std::int32_t),
                               cudaMemcpyDeviceToDevice, s),
               "cudaMemcpyAsync (kept layout)");
    dst.view = src;
    dst.view.row_offsets = dst.row_offsets.get();
    dst.view.col_indices = dst.col_indices.get();
  }

  DeviceLayoutView slot_view(int slot) const {
    const SlotInfo& info = slots_[slot];
    require(info.selected, "slot", std::to_string(slot) + ": no layout was selected for it yet");
    if (options_.keep_layouts) return kept_[slot].view;
    if (current_slot_ != slot) throw_replaced_slot(slot, current_slot_);
    return batches_.at(current_batch_).builder->device_layout();
  }

  const RadialPrior& prior_;
  EngineOptions options_;
  int device_ = 0;
  std::map<std::int64_t, PerBatch> batches_;
  // One attention plan per (batch, dtype), made by the first attend() or attend_dense() of it (both
  // const for callers).
  mutable std::map<std::pair<std::int64_t, DType>, std::unique_ptr<CudaLayoutAttention>> attention_;
  std::vector<SlotInfo> slots_;
  std::vector<KeptLayout> kept_;
  std::unique_ptr<MaskBuildStatus, PinnedFree> status_;
  int current_slot_ = -1;
  std::int64_t current_batch_ = 0;
};

}  // namespace

std::unique_ptr<SparseAttentionEngine::Backend> make_cuda_engine(const RadialPrior& prior,
                                                                 const EngineOptions& options) {
  return std::make_unique<CudaEngine>(prior, options);
}

}  // namespace dynamicrad::detail
