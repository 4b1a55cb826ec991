// A small C ABI over plan_cuda_attention() for the GPU benchmark script (bench/gpu/bench_attention.py,
// loaded with ctypes), so that our kernel runs on the very torch tensors and block masks the
// baselines get. Not a public API. Errors come back as a message in `error` and a non-zero result.
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>

#include "dynamicrad/cuda_attention.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/presets.h"
#include "dynamicrad/prior.h"

namespace dr = dynamicrad;

namespace {

struct Plan {
  std::unique_ptr<dr::AttentionBackend> backend;
  dr::DType dtype;
  std::int64_t head_dim;
};

void write_error(const std::exception& e, char* error, int error_len) {
  if (error != nullptr && error_len > 0) {
    std::strncpy(error, e.what(), static_cast<std::size_t>(error_len) - 1);
    error[error_len - 1] = '\0';
  }
}

}  // namespace

extern "C" {

// Plans attention for a CSR layout given as host arrays (see layout.h): row_offsets
// [batch * heads * blocks + 1], col_indices [row_offsets[last]]. dtype: 0 = f16, 1 = bf16.
// kernel: 0 automatic, 1 wgmma, 2 mma_sync. schedule: 0 head-major, 1 longest-first. stages: wgmma
// K/V stages, 0 = default. Returns a handle, or null with the message in `error`.
void* dr_attention_plan(std::int64_t batch, std::int64_t heads, std::int64_t tokens, int block_size,
                        const std::int64_t* row_offsets, const std::int32_t* col_indices, int dtype, int head_dim,
                        int kernel, int schedule, int stages, char* error, int error_len) {
  try {
    dr::BlockLayout layout;
    layout.batch = batch;
    layout.heads = heads;
    layout.tokens = tokens;
    layout.block_size = block_size;
    layout.blocks = (tokens + block_size - 1) / block_size;
    layout.row_offsets.assign(row_offsets, row_offsets + layout.rows() + 1);
    layout.col_indices.assign(col_indices, col_indices + layout.row_offsets.back());
    dr::CudaAttentionOptions options;
    options.dtype = dtype == 1 ? dr::DType::bf16 : dr::DType::f16;
    options.head_dim = head_dim;
    options.kernel = kernel == 1   ? dr::CudaKernel::wgmma
                     : kernel == 2 ? dr::CudaKernel::mma_sync
                                   : dr::CudaKernel::automatic;
    options.schedule = schedule == 1 ? dr::CudaSchedule::longest_first : dr::CudaSchedule::head_major;
    options.stages = stages;
    auto plan = std::make_unique<Plan>();
    plan->backend = dr::plan_cuda_attention(layout, options);
    plan->dtype = options.dtype;
    plan->head_dim = head_dim;
    return plan.release();
  } catch (const std::exception& e) {
    write_error(e, error, error_len);
    return nullptr;
  }
}

// Runs a plan. q, k, v, out: device [batch, tokens, heads, head_dim]; lse: device [batch, heads,
// tokens] float or null; stream: a cudaStream_t or null. Returns 0 on success.
int dr_attention_run(void* handle, const void* q, const void* k, const void* v, void* out, float* lse, void* stream,
                     char* error, int error_len) {
  try {
    const auto* plan = static_cast<const Plan*>(handle);
    const dr::BlockLayout& l = plan->backend->layout();
    dr::Shape shape;
    shape.batch = l.batch;
    shape.tokens = l.tokens;
    shape.heads = l.heads;
    shape.head_dim = plan->head_dim;
    dr::AttentionArgs args;
    args.q = dr::ConstTensor{q, plan->dtype, shape};
    args.k = dr::ConstTensor{k, plan->dtype, shape};
    args.v = dr::ConstTensor{v, plan->dtype, shape};
    args.out = dr::MutableTensor{out, plan->dtype, shape};
    args.lse = lse;
    args.stream = stream;
    plan->backend->run(args);
    return 0;
  } catch (const std::exception& e) {
    write_error(e, error, error_len);
    return 1;
  }
}

void dr_attention_free(void* handle) { delete static_cast<Plan*>(handle); }

// The radial prior (default parameters, head independent) of a named preset as a CSR over its query
// blocks. Call with null arrays to get the sizes, then with arrays of those sizes.
// Returns 0 on success.
int dr_prior_layout(const char* preset, std::int64_t* tokens, std::int64_t* blocks, std::int64_t* kept,
                    std::int64_t* row_offsets, std::int32_t* col_indices, char* error, int error_len) {
  try {
    const dr::VideoGeometry g = dr::preset_geometry(preset);
    const dr::RadialPrior prior = dr::build_radial_prior(g, dr::RadialPriorParams{});
    *tokens = dr::total_tokens(g);
    *blocks = prior.blocks;
    *kept = prior.size();
    if (row_offsets != nullptr) std::memcpy(row_offsets, prior.row_offsets.data(), prior.row_offsets.size() * 8);
    if (col_indices != nullptr) std::memcpy(col_indices, prior.col_indices.data(), prior.col_indices.size() * 4);
    return 0;
  } catch (const std::exception& e) {
    write_error(e, error, error_len);
    return 1;
  }
}

}  // extern "C"
