// CUDA (Hopper) block-sparse attention: the GPU backend behind the AttentionBackend interface.
//
// Planning and running are separate (FlashInfer's plan/run split):
//   auto backend = plan_cuda_attention(layout, options);   // checks, copies the layout to the
//                                                          // device, builds the schedule, picks
//                                                          // the kernel; allocates
//   backend->run(args);                                    // launches on args.stream; allocates
//                                                          // nothing, so it can be captured in a
//                                                          // CUDA graph
//
// Tensors passed to run() live on the device of the plan (see attention.h for the layout):
//   q, k, v: [batch, tokens, heads, head_dim] f16 or bf16, contiguous (token stride heads *
//            head_dim elements, the diffusers layout: no transposes), 16-byte aligned
//   out:     [batch, tokens, heads, head_dim], same dtype as q, 16-byte aligned; every element of
//            the first `tokens` rows is written (rows of an empty layout row get 0)
//   lse:     [batch, heads, tokens] float or nullptr; natural-log log-sum-exp of the scaled scores
//            of each query; -inf for a query whose layout row keeps no block
// Key positions >= tokens inside the last block are masked (never read past the tensors).
//
// Supported: head_dim 64 and 128; block_size 128 (the Hopper warp-specialised kernel: wgmma, TMA,
// a persistent grid) and 64 (the portable mma.sync kernel); f16 and bf16 with fp32 accumulation.
// run() throws dynamicrad::Error naming the bad field when a tensor disagrees with the plan, and
// Error("cuda", ...) when a CUDA call fails.
//
// Without the CUDA backend (built_with_cuda() == false) plan_cuda_attention() throws
// Error("device", "built without CUDA").
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "dynamicrad/attention.h"
#include "dynamicrad/cuda_mask.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/tensor.h"

namespace dynamicrad {

// Which kernel family runs the plan.
enum class CudaKernel {
  automatic,  // wgmma for block 128 on sm_90, otherwise mma_sync
  wgmma,      // sm_90a: TMA loads, a producer warp and two consumer warpgroups, persistent grid
  mma_sync,   // FlashAttention-2 style: mma.sync m16n8k16, ldmatrix, cp.async double buffering
};

// Order in which query-block rows are handed to the CTAs. The persistent wgmma kernel assigns the
// rows, in this order, each to the CTA with the least work so far (at planning, deterministic).
enum class CudaSchedule {
  head_major,     // (batch, head) groups with the most work first, query blocks ascending inside a
                  // group: concurrently running rows share K/V in L2
  longest_first,  // every row by descending block count (longest-processing-time first): the best
                  // balance, but rows of many heads run at once (less L2 reuse)
};

struct CudaAttentionOptions {
  double scale = 0.0;           // softmax scale, > 0; 0 means 1 / sqrt(head_dim)
  DType dtype = DType::bf16;    // q, k, v and out: f16 or bf16
  std::int64_t head_dim = 128;  // 64 or 128
  CudaKernel kernel = CudaKernel::automatic;
  CudaSchedule schedule = CudaSchedule::head_major;
  int stages = 0;               // wgmma K/V shared-memory stages: 0 = default; head_dim 128 takes 2 or 3,
                                // head_dim 64 takes 4 (other values: Error naming options.stages)
  int device = -1;              // CUDA device ordinal; -1 means the current device
};

// Plans block-sparse attention on the GPU for `layout` (validated here). The returned backend
// keeps a host copy of the layout (layout()) and owns the device copies; it must be destroyed
// before the CUDA context. name() says which kernel runs ("cuda-wgmma", "cuda-mma-sync").
std::unique_ptr<AttentionBackend> plan_cuda_attention(const BlockLayout& layout,
                                                      const CudaAttentionOptions& options);

// Block-sparse attention over a layout that lives on the device and changes between runs (the
// CudaMaskBuilder's output), for the engine (engine.h): planning fixes the shape only, so the layout
// never travels to the host. The schedule cannot depend on the layout's content: the rows are dealt
// to the persistent CTAs round-robin in row order (CTA c takes rows c, c + grid, ...), so that CTAs
// running at the same time work on neighbouring query blocks of one head (K/V shared in L2) and
// every CTA gets a similar mix of long and short rows.
class CudaLayoutAttention {
 public:
  virtual ~CudaLayoutAttention() = default;
  virtual std::string name() const = 0;
  // layout: batch, heads, tokens and block_size must match the plan; its arrays stay on the device.
  virtual void run(const AttentionArgs& args, const DeviceLayoutView& layout) const = 0;
  // Attention over every block pair (dense attention on the same kernels; no layout arrays).
  virtual void run_dense(const AttentionArgs& args) const = 0;
  // Device memory the plan holds (its schedule), in bytes.
  virtual std::int64_t device_bytes() const = 0;
};

// shape: the [batch, tokens, heads, head_dim] of q, k, v and out (head_dim must equal
// options.head_dim). Throws like plan_cuda_attention().
std::unique_ptr<CudaLayoutAttention> plan_cuda_layout_attention(const Shape& shape, int block_size,
                                                                const CudaAttentionOptions& options);

std::string to_string(CudaKernel kernel);
std::string to_string(CudaSchedule schedule);

}  // namespace dynamicrad
