// Plain parameters of the block-sparse attention kernels and their launchers (no framework types).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dynamicrad::cuda {

// log2(e): softmax runs in base 2 (exp(x) = exp2(x * kLog2e)), and ex2 is one MUFU instruction.
constexpr float kLog2e = 1.4426950408889634f;
// ln(2): turns the base-2 log-sum-exp back into the natural log the API promises.
constexpr float kLn2 = 0.6931471805599453f;

enum class ElementType { f16, bf16 };

struct SparseAttentionParams {
  const void* q = nullptr;  // [batch, tokens, heads, head_dim]
  const void* k = nullptr;  // [batch, tokens, heads, head_dim]
  const void* v = nullptr;  // [batch, tokens, heads, head_dim]
  void* out = nullptr;      // [batch, tokens, heads, head_dim]
  float* lse = nullptr;     // [batch, heads, tokens] or nullptr

  int batch = 0;
  int heads = 0;
  int tokens = 0;
  int blocks = 0;        // query blocks == key blocks per (batch, head): ceil(tokens / block_size)
  int num_rows = 0;      // batch * heads * blocks

  // The layout; both null: the full layout (every key block for every row, no arrays read).
  const std::int64_t* row_offsets = nullptr;  // [num_rows + 1], device
  const std::int32_t* col_indices = nullptr;  // [row_offsets[num_rows]], device, ascending per row
  const std::int32_t* row_order = nullptr;    // [num_rows], device: the schedule (a permutation)
  // Persistent kernels: CTA c computes rows row_order[cta_offsets[c] .. cta_offsets[c + 1]), in order.
  const std::int32_t* cta_offsets = nullptr;  // [grid + 1], device

  float scale_log2 = 0.0f;  // softmax scale * kLog2e
};

// Row `row` of the layout: entries [row_begin, row_end), entry e naming key block key_block(e).
__device__ __forceinline__ std::int64_t row_begin(const SparseAttentionParams& p, int row) {
  return p.col_indices == nullptr ? 0 : p.row_offsets[row];
}
__device__ __forceinline__ std::int64_t row_end(const SparseAttentionParams& p, int row) {
  return p.col_indices == nullptr ? p.blocks : p.row_offsets[row + 1];
}
__device__ __forceinline__ int key_block(const SparseAttentionParams& p, std::int64_t e) {
  return p.col_indices == nullptr ? static_cast<int>(e) : p.col_indices[e];
}

// Launchers (one translation unit per kernel family). They throw dynamicrad::Error on a CUDA error.
void launch_mma_sync_attention(const SparseAttentionParams& params, ElementType type, int head_dim,
                               int block_size, cudaStream_t stream);
void prepare_mma_sync_attention(ElementType type, int head_dim, int block_size);

// The persistent Hopper kernel for block 128, with `stages` K/V shared-memory stages (0 < stages;
// default_wgmma_stages() when the plan does not choose). The tensor maps are encoded from the
// pointers in `params` on every launch (host work only, no allocation).
int default_wgmma_stages(int head_dim);
void launch_wgmma_attention(const SparseAttentionParams& params, ElementType type, int head_dim, int stages,
                            int grid, cudaStream_t stream);
void prepare_wgmma_attention(ElementType type, int head_dim, int stages);

}  // namespace dynamicrad::cuda
