// plan_cuda_attention(): validates the plan, copies the layout and the schedule to the device and
// picks the kernel; run() checks the tensors against the plan and launches (no allocation).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"
#include "cuda/cuda_check.cuh"
#include "cuda/sparse_attention_params.cuh"
#include "dynamicrad/cuda_attention.h"

namespace dynamicrad {

namespace {

using cuda::check_cuda;
using detail::require;

struct DeviceFree {
  void operator()(void* p) const { cudaFree(p); }
};
template <typename T>
using DeviceArray = std::unique_ptr<T, DeviceFree>;

template <typename T>
DeviceArray<T> to_device(const std::vector<T>& host, const char* what) {
  T* p = nullptr;
  const std::size_t bytes = std::max<std::size_t>(1, host.size()) * sizeof(T);
  check_cuda(cudaMalloc(&p, bytes), what);
  DeviceArray<T> owned(p);
  if (!host.empty()) check_cuda(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), what);
  return owned;
}

// Makes `device` current for the guard's lifetime.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (device != previous_) check_cuda(cudaSetDevice(device), "cudaSetDevice");
    switched_ = device != previous_;
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

std::int64_t row_length(const BlockLayout& l, std::int64_t r) { return l.row_offsets[r + 1] - l.row_offsets[r]; }

// The order in which rows are handed to CTAs (see CudaSchedule).
std::vector<std::int32_t> build_schedule(const BlockLayout& l, CudaSchedule schedule) {
  std::vector<std::int32_t> order(static_cast<std::size_t>(l.rows()));
  std::iota(order.begin(), order.end(), 0);
  if (schedule == CudaSchedule::longest_first) {
    std::stable_sort(order.begin(), order.end(),
                     [&](std::int32_t a, std::int32_t b) { return row_length(l, a) > row_length(l, b); });
    return order;
  }
  // head_major: (batch, head) groups by descending work, query blocks ascending inside a group.
  const std::int64_t groups = l.batch * l.heads;
  std::vector<std::int64_t> work(static_cast<std::size_t>(groups));
  for (std::int64_t gi = 0; gi < groups; ++gi) {
    work[gi] = l.row_offsets[(gi + 1) * l.blocks] - l.row_offsets[gi * l.blocks];
  }
  std::vector<std::int64_t> group_order(static_cast<std::size_t>(groups));
  std::iota(group_order.begin(), group_order.end(), 0);
  std::stable_sort(group_order.begin(), group_order.end(),
                   [&](std::int64_t a, std::int64_t b) { return work[a] > work[b]; });
  std::size_t next = 0;
  for (std::int64_t gi : group_order) {
    for (std::int64_t qb = 0; qb < l.blocks; ++qb) order[next++] = static_cast<std::int32_t>(gi * l.blocks + qb);
  }
  return order;
}

// Splits `order` among `grid` persistent CTAs: each row, in order, goes to the CTA with the least
// work so far (list scheduling, what a dynamic work queue would do, decided once at planning so that
// the kernel needs no atomics and every launch is deterministic). A row costs its key blocks plus
// one block for its prologue and epilogue. Rows keep the order's sequence, so CTAs running at the
// same time work on neighbouring rows (head_major: the same head's K/V stays in L2); with
// longest_first this is the classic LPT schedule. Returns the rows grouped by CTA; cta_offsets gets
// the [grid + 1] group bounds.
std::vector<std::int32_t> assign_rows(const BlockLayout& l, const std::vector<std::int32_t>& order, int grid,
                                      std::vector<std::int32_t>& cta_offsets) {
  using Load = std::pair<std::int64_t, int>;  // (work so far, CTA): the smallest on top
  std::priority_queue<Load, std::vector<Load>, std::greater<Load>> loads;
  for (int c = 0; c < grid; ++c) loads.push({0, c});
  std::vector<std::vector<std::int32_t>> lists(static_cast<std::size_t>(grid));
  for (std::int32_t row : order) {
    Load least = loads.top();
    loads.pop();
    lists[least.second].push_back(row);
    least.first += row_length(l, row) + 1;
    loads.push(least);
  }
  std::vector<std::int32_t> grouped;
  grouped.reserve(order.size());
  cta_offsets.assign(1, 0);
  for (const auto& list : lists) {
    grouped.insert(grouped.end(), list.begin(), list.end());
    cta_offsets.push_back(static_cast<std::int32_t>(grouped.size()));
  }
  return grouped;
}

cuda::ElementType element_type(DType dtype) {
  return dtype == DType::bf16 ? cuda::ElementType::bf16 : cuda::ElementType::f16;
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

class CudaAttention final : public AttentionBackend {
 public:
  CudaAttention(const BlockLayout& layout, const CudaAttentionOptions& options) : layout_(layout), options_(options) {
    validate(layout_);
    require(options.dtype == DType::f16 || options.dtype == DType::bf16, "options.dtype",
            to_string(options.dtype) + ": the CUDA kernels take f16 or bf16");
    require(options.head_dim == 64 || options.head_dim == 128, "options.head_dim",
            std::to_string(options.head_dim) + ": allowed values are 64, 128");
    require(layout.block_size == 64 || layout.block_size == 128, "layout.block_size",
            std::to_string(layout.block_size) + ": the CUDA kernels take 64 or 128");
    require(options.stages >= 0, "options.stages", std::to_string(options.stages) + ": must be >= 0 (0: default)");
    require(std::isfinite(options.scale) && options.scale >= 0.0, "options.scale",
            "must be > 0 (or 0 for 1 / sqrt(head_dim))");
    constexpr std::int64_t kIntMax = std::numeric_limits<std::int32_t>::max();
    require(layout.rows() <= kIntMax, "layout", "batch * heads * blocks must fit in 32 bits");
    require(layout.tokens <= kIntMax - 2 * layout.block_size, "layout.tokens", "must fit in 32 bits");

    device_ = options.device;
    if (device_ < 0) check_cuda(cudaGetDevice(&device_), "cudaGetDevice");
    DeviceGuard guard(device_);
    cudaDeviceProp prop{};
    check_cuda(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
    const bool hopper = prop.major == 9;

    kernel_ = options.kernel;
    if (kernel_ == CudaKernel::automatic) {
      kernel_ = hopper && layout.block_size == 128 ? CudaKernel::wgmma : CudaKernel::mma_sync;
    }
    if (kernel_ == CudaKernel::wgmma) {
      require(layout.block_size == 128, "options.kernel", "wgmma needs layout.block_size 128, got " +
                                                              std::to_string(layout.block_size));
      require(hopper, "options.kernel",
              "wgmma needs an sm_90 GPU, device " + std::to_string(device_) + " is sm_" +
                  std::to_string(prop.major) + std::to_string(prop.minor));
      stages_ = options.stages != 0 ? options.stages : cuda::default_wgmma_stages(static_cast<int>(options.head_dim));
      cuda::prepare_wgmma_attention(element_type(options.dtype), static_cast<int>(options.head_dim), stages_);
      grid_ = static_cast<int>(std::min<std::int64_t>(layout.rows(), prop.multiProcessorCount));
    } else {
      cuda::prepare_mma_sync_attention(element_type(options.dtype), static_cast<int>(options.head_dim),
                                       layout.block_size);
    }

    row_offsets_ = to_device(layout_.row_offsets, "cudaMalloc(layout.row_offsets)");
    col_indices_ = to_device(layout_.col_indices, "cudaMalloc(layout.col_indices)");
    std::vector<std::int32_t> order = build_schedule(layout_, options.schedule);
    if (kernel_ == CudaKernel::wgmma) {
      std::vector<std::int32_t> cta_offsets;
      order = assign_rows(layout_, order, grid_, cta_offsets);
      cta_offsets_ = to_device(cta_offsets, "cudaMalloc(schedule)");
    }
    row_order_ = to_device(order, "cudaMalloc(schedule)");
    scale_ = options.scale != 0.0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(options.head_dim));
  }

  std::string name() const override { return kernel_ == CudaKernel::wgmma ? "cuda-wgmma" : "cuda-mma-sync"; }

  const BlockLayout& layout() const override { return layout_; }

  void run(const AttentionArgs& args) const override {
    check_attention_args(args, &layout_);
    const Shape& s = args.q.shape;
    require(args.q.dtype == options_.dtype, "q",
            "dtype " + to_string(args.q.dtype) + " differs from the plan's " + to_string(options_.dtype));
    require(args.out.dtype == options_.dtype, "out",
            "dtype " + to_string(args.out.dtype) + " differs from the plan's " + to_string(options_.dtype));
    require(s.head_dim == options_.head_dim, "q",
            "head_dim " + std::to_string(s.head_dim) + " differs from the plan's " + std::to_string(options_.head_dim));
    require(aligned16(args.q.data), "q", "data must be 16-byte aligned");
    require(aligned16(args.k.data), "k", "data must be 16-byte aligned");
    require(aligned16(args.v.data), "v", "data must be 16-byte aligned");
    require(aligned16(args.out.data), "out", "data must be 16-byte aligned");

    cuda::SparseAttentionParams p;
    p.q = args.q.data;
    p.k = args.k.data;
    p.v = args.v.data;
    p.out = args.out.data;
    p.lse = args.lse;
    p.batch = static_cast<int>(layout_.batch);
    p.heads = static_cast<int>(layout_.heads);
    p.tokens = static_cast<int>(layout_.tokens);
    p.blocks = static_cast<int>(layout_.blocks);
    p.num_rows = static_cast<int>(layout_.rows());
    p.row_offsets = row_offsets_.get();
    p.col_indices = col_indices_.get();
    p.row_order = row_order_.get();
    p.cta_offsets = cta_offsets_.get();
    p.scale_log2 = static_cast<float>(scale_ * static_cast<double>(cuda::kLog2e));

    DeviceGuard guard(device_);
    auto stream = static_cast<cudaStream_t>(args.stream);
    const cuda::ElementType type = element_type(options_.dtype);
    const int dim = static_cast<int>(options_.head_dim);
    if (kernel_ == CudaKernel::wgmma) {
      cuda::launch_wgmma_attention(p, type, dim, stages_, grid_, stream);
    } else {
      cuda::launch_mma_sync_attention(p, type, dim, layout_.block_size, stream);
    }
  }

 private:
  BlockLayout layout_;
  CudaAttentionOptions options_;
  CudaKernel kernel_ = CudaKernel::automatic;
  int device_ = 0;
  int grid_ = 0;
  int stages_ = 0;
  double scale_ = 0.0;
  DeviceArray<std::int64_t> row_offsets_;
  DeviceArray<std::int32_t> col_indices_;
  DeviceArray<std::int32_t> row_order_;
  DeviceArray<std::int32_t> cta_offsets_;  // wgmma only: [grid + 1] bounds of each CTA's rows in row_order_
};

}  // namespace

std::unique_ptr<AttentionBackend> plan_cuda_attention(const BlockLayout& layout, const CudaAttentionOptions& options) {
  return std::make_unique<CudaAttention>(layout, options);
}

}  // namespace dynamicrad
