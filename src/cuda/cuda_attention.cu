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
#include "cuda/device_memory.cuh"
#include "cuda/sparse_attention_params.cuh"
#include "dynamicrad/cuda_attention.h"

namespace dynamicrad {

namespace {

using cuda::check_cuda;
using detail::require;
using detail::require_shape;

using cuda::DeviceFree;
using cuda::DeviceGuard;
template <typename T>
using DeviceArray = std::unique_ptr<T, DeviceFree>;

// Device bytes to_device() allocates for `n` elements of T.
template <typename T>
std::int64_t device_size(std::size_t n) {
  return static_cast<std::int64_t>(std::max<std::size_t>(1, n) * sizeof(T));
}

template <typename T>
DeviceArray<T> to_device(const std::vector<T>& host, const char* what) {
  T* p = nullptr;
  const auto bytes = static_cast<std::size_t>(device_size<T>(host.size()));
  check_cuda(cudaMalloc(&p, bytes), what);
  DeviceArray<T> owned(p);
  if (!host.empty()) check_cuda(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), what);
  return owned;
}

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

// The kernel a plan runs, resolved against the device (shared by both plan kinds).
struct KernelChoice {
  CudaKernel kernel = CudaKernel::automatic;
  int device = 0;
  int stages = 0;
  int sm_count = 0;
};

void check_options(const CudaAttentionOptions& options, int block_size) {
  require(options.dtype == DType::f16 || options.dtype == DType::bf16, "options.dtype",
          to_string(options.dtype) + ": the CUDA kernels take f16 or bf16");
  require(options.head_dim == 64 || options.head_dim == 128, "options.head_dim",
          std::to_string(options.head_dim) + ": allowed values are 64, 128");
  require(block_size == 64 || block_size == 128, "layout.block_size",
          std::to_string(block_size) + ": the CUDA kernels take 64 or 128");
  require(options.stages >= 0, "options.stages", std::to_string(options.stages) + ": must be >= 0 (0: default)");
  require(std::isfinite(options.scale) && options.scale >= 0.0, "options.scale",
          "must be > 0 (or 0 for 1 / sqrt(head_dim))");
}

KernelChoice choose_kernel(const CudaAttentionOptions& options, int block_size) {
  KernelChoice c;
  c.device = options.device;
  if (c.device < 0) check_cuda(cudaGetDevice(&c.device), "cudaGetDevice");
  DeviceGuard guard(c.device);
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, c.device), "cudaGetDeviceProperties");
  const bool hopper = prop.major == 9;
  c.sm_count = prop.multiProcessorCount;
  c.kernel = options.kernel;
  if (c.kernel == CudaKernel::automatic) {
    c.kernel = hopper && block_size == 128 ? CudaKernel::wgmma : CudaKernel::mma_sync;
  }
  if (c.kernel == CudaKernel::wgmma) {
    require(block_size == 128, "options.kernel", "wgmma needs layout.block_size 128, got " + std::to_string(block_size));
    require(hopper, "options.kernel",
            "wgmma needs an sm_90 GPU, device " + std::to_string(c.device) + " is sm_" + std::to_string(prop.major) +
                std::to_string(prop.minor));
    c.stages = options.stages != 0 ? options.stages : cuda::default_wgmma_stages(static_cast<int>(options.head_dim));
    cuda::prepare_wgmma_attention(element_type(options.dtype), static_cast<int>(options.head_dim), c.stages);
  } else {
    cuda::prepare_mma_sync_attention(element_type(options.dtype), static_cast<int>(options.head_dim), block_size);
  }
  return c;
}

// Checks the tensors' dtype, head_dim and alignment against the plan.
// `device`: the plan's device (KernelChoice::device), where every tensor must live.
void check_kernel_tensors(const AttentionArgs& args, const CudaAttentionOptions& options, int device) {
  for (const auto& [dtype, name] : {std::pair<DType, const char*>{args.q.dtype, "q"}, {args.k.dtype, "k"},
                                    {args.v.dtype, "v"}}) {
    require(dtype == options.dtype, name,
            "dtype " + to_string(dtype) + " differs from the plan's " + to_string(options.dtype));
  }
  require(args.out.dtype == options.dtype, "out",
          "dtype " + to_string(args.out.dtype) + " differs from the plan's " + to_string(options.dtype));
  require(args.q.shape.head_dim == options.head_dim, "q",
          "head_dim " + std::to_string(args.q.shape.head_dim) + " differs from the plan's " +
              std::to_string(options.head_dim));
  require(aligned16(args.q.data), "q", "data must be 16-byte aligned");
  require(aligned16(args.k.data), "k", "data must be 16-byte aligned");
  require(aligned16(args.v.data), "v", "data must be 16-byte aligned");
  require(aligned16(args.out.data), "out", "data must be 16-byte aligned");
  const char* who = "CUDA attention";
  cuda::require_device_memory(args.q.data, "q", device, who);
  cuda::require_device_memory(args.k.data, "k", device, who);
  cuda::require_device_memory(args.v.data, "v", device, who);
  cuda::require_device_memory(args.out.data, "out", device, who);
  if (args.lse != nullptr) cuda::require_device_memory(args.lse, "lse", device, who);
}

void launch(const cuda::SparseAttentionParams& p, const CudaAttentionOptions& options, const KernelChoice& choice,
            int block_size, int grid, void* stream) {
  DeviceGuard guard(choice.device);
  const cuda::ElementType type = element_type(options.dtype);
  const int dim = static_cast<int>(options.head_dim);
  if (choice.kernel == CudaKernel::wgmma) {
    cuda::launch_wgmma_attention(p, type, dim, choice.stages, grid, static_cast<cudaStream_t>(stream));
  } else {
    cuda::launch_mma_sync_attention(p, type, dim, block_size, static_cast<cudaStream_t>(stream));
  }
}

cuda::SparseAttentionParams kernel_params(const AttentionArgs& args, std::int64_t batch, std::int64_t heads,
                                          std::int64_t tokens, std::int64_t blocks, double scale) {
  cuda::SparseAttentionParams p;
  p.q = args.q.data;
  p.k = args.k.data;
  p.v = args.v.data;
  p.out = args.out.data;
  p.lse = args.lse;
  p.batch = static_cast<int>(batch);
  p.heads = static_cast<int>(heads);
  p.tokens = static_cast<int>(tokens);
  p.blocks = static_cast<int>(blocks);
  p.num_rows = static_cast<int>(batch * heads * blocks);
  p.scale_log2 = static_cast<float>(scale * static_cast<double>(cuda::kLog2e));
  return p;
}

double softmax_scale(const CudaAttentionOptions& options) {
  return options.scale != 0.0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(options.head_dim));
}

void check_sizes(std::int64_t rows, std::int64_t tokens, int block_size) {
  constexpr std::int64_t kIntMax = std::numeric_limits<std::int32_t>::max();
  require(rows <= kIntMax, "layout", "batch * heads * blocks must fit in 32 bits");
  require(tokens <= kIntMax - 2 * block_size, "layout.tokens", "must fit in 32 bits");
}

class CudaAttention final : public AttentionBackend {
 public:
  CudaAttention(const BlockLayout& layout, const CudaAttentionOptions& options) : layout_(layout), options_(options) {
    validate(layout_);
    check_options(options, layout.block_size);
    check_sizes(layout.rows(), layout.tokens, layout.block_size);
    choice_ = choose_kernel(options, layout.block_size);
    DeviceGuard guard(choice_.device);
    row_offsets_ = to_device(layout_.row_offsets, "cudaMalloc(layout.row_offsets)");
    col_indices_ = to_device(layout_.col_indices, "cudaMalloc(layout.col_indices)");
    std::vector<std::int32_t> order = build_schedule(layout_, options.schedule);
    if (choice_.kernel == CudaKernel::wgmma) {
      grid_ = static_cast<int>(std::min<std::int64_t>(layout.rows(), choice_.sm_count));
      std::vector<std::int32_t> cta_offsets;
      order = assign_rows(layout_, order, grid_, cta_offsets);
      cta_offsets_ = to_device(cta_offsets, "cudaMalloc(schedule)");
    }
    row_order_ = to_device(order, "cudaMalloc(schedule)");
  }

  std::string name() const override { return choice_.kernel == CudaKernel::wgmma ? "cuda-wgmma" : "cuda-mma-sync"; }

  const BlockLayout& layout() const override { return layout_; }

  void run(const AttentionArgs& args) const override {
    check_attention_args(args, &layout_);
    check_kernel_tensors(args, options_, choice_.device);
    cuda::SparseAttentionParams p =
        kernel_params(args, layout_.batch, layout_.heads, layout_.tokens, layout_.blocks, softmax_scale(options_));
    p.row_offsets = row_offsets_.get();
    p.col_indices = col_indices_.get();
    p.row_order = row_order_.get();
    p.cta_offsets = cta_offsets_.get();
    launch(p, options_, choice_, layout_.block_size, grid_, args.stream);
  }

 private:
  BlockLayout layout_;
  CudaAttentionOptions options_;
  KernelChoice choice_;
  int grid_ = 0;
  DeviceArray<std::int64_t> row_offsets_;
  DeviceArray<std::int32_t> col_indices_;
  DeviceArray<std::int32_t> row_order_;
  DeviceArray<std::int32_t> cta_offsets_;  // wgmma only: [grid + 1] bounds of each CTA's rows in row_order_
};

// Round-robin deal of `rows` rows to `grid` CTAs, grouped by CTA: CTA c gets c, c + grid, ...
std::vector<std::int32_t> round_robin(std::int64_t rows, int grid, std::vector<std::int32_t>& cta_offsets) {
  std::vector<std::int32_t> order;
  order.reserve(static_cast<std::size_t>(rows));
  cta_offsets.assign(1, 0);
  for (int c = 0; c < grid; ++c) {
    for (std::int64_t r = c; r < rows; r += grid) order.push_back(static_cast<std::int32_t>(r));
    cta_offsets.push_back(static_cast<std::int32_t>(order.size()));
  }
  return order;
}

class CudaLayoutAttentionImpl final : public CudaLayoutAttention {
 public:
  CudaLayoutAttentionImpl(const Shape& shape, int block_size, const CudaAttentionOptions& options)
      : shape_(shape), block_size_(block_size), options_(options) {
    require(shape.batch >= 1 && shape.heads >= 1 && shape.tokens >= 1, "shape",
            to_string(shape) + ": batch, tokens and heads must be >= 1");
    require(shape.head_dim == options.head_dim, "shape.head_dim",
            std::to_string(shape.head_dim) + " differs from options.head_dim " + std::to_string(options.head_dim));
    check_options(options, block_size);
    blocks_ = (shape.tokens + block_size - 1) / block_size;
    const std::int64_t rows = shape.batch * shape.heads * blocks_;
    check_sizes(rows, shape.tokens, block_size);
    choice_ = choose_kernel(options, block_size);
    DeviceGuard guard(choice_.device);
    std::vector<std::int32_t> order;
    if (choice_.kernel == CudaKernel::wgmma) {
      grid_ = static_cast<int>(std::min<std::int64_t>(rows, choice_.sm_count));
      std::vector<std::int32_t> cta_offsets;
      order = round_robin(rows, grid_, cta_offsets);
      cta_offsets_ = to_device(cta_offsets, "cudaMalloc(schedule)");
      device_bytes_ += device_size<std::int32_t>(cta_offsets.size());
    } else {
      order.resize(static_cast<std::size_t>(rows));
      std::iota(order.begin(), order.end(), 0);
    }
    row_order_ = to_device(order, "cudaMalloc(schedule)");
    device_bytes_ += device_size<std::int32_t>(order.size());
  }

  std::string name() const override { return choice_.kernel == CudaKernel::wgmma ? "cuda-wgmma" : "cuda-mma-sync"; }

  void run(const AttentionArgs& args, const DeviceLayoutView& layout) const override {
    require(layout.batch == shape_.batch && layout.heads == shape_.heads && layout.tokens == shape_.tokens &&
                layout.block_size == block_size_ && layout.blocks == blocks_,
            "layout", "batch " + std::to_string(layout.batch) + ", heads " + std::to_string(layout.heads) + ", tokens " +
                          std::to_string(layout.tokens) + ", block " + std::to_string(layout.block_size) +
                          " differ from the plan's " + to_string(shape_) + ", block " + std::to_string(block_size_));
    require(layout.row_offsets != nullptr && layout.col_indices != nullptr, "layout", "arrays are null");
    launch_on(args, layout.row_offsets, layout.col_indices);
  }

  void run_dense(const AttentionArgs& args) const override { launch_on(args, nullptr, nullptr); }

  std::int64_t device_bytes() const override { return device_bytes_; }

 private:
  // Null arrays: the kernels' full layout (sparse_attention_params.cuh).
  void launch_on(const AttentionArgs& args, const std::int64_t* row_offsets, const std::int32_t* col_indices) const {
    require_shape(args.q, shape_, "q");
    check_attention_args(args, nullptr);  // k, v, out against q
    check_kernel_tensors(args, options_, choice_.device);
    cuda::SparseAttentionParams p =
        kernel_params(args, shape_.batch, shape_.heads, shape_.tokens, blocks_, softmax_scale(options_));
    p.row_offsets = row_offsets;
    p.col_indices = col_indices;
    p.row_order = row_order_.get();
    p.cta_offsets = cta_offsets_.get();
    launch(p, options_, choice_, block_size_, grid_, args.stream);
  }

  Shape shape_;
  int block_size_ = 0;
  std::int64_t blocks_ = 0;
  CudaAttentionOptions options_;
  KernelChoice choice_;
  int grid_ = 0;
  DeviceArray<std::int32_t> row_order_;
  DeviceArray<std::int32_t> cta_offsets_;
  std::int64_t device_bytes_ = 0;
};

}  // namespace

std::unique_ptr<AttentionBackend> plan_cuda_attention(const BlockLayout& layout, const CudaAttentionOptions& options) {
  return std::make_unique<CudaAttention>(layout, options);
}

std::unique_ptr<CudaLayoutAttention> plan_cuda_layout_attention(const Shape& shape, int block_size,
                                                                const CudaAttentionOptions& options) {
  return std::make_unique<CudaLayoutAttentionImpl>(shape, block_size, options);
}

}  // namespace dynamicrad
