// Block-sparse attention, FlashAttention-2 style: the portable kernel (mma.sync m16n8k16, ldmatrix,
// cp.async double buffering). Runs any layout block size 64 or 128 and is the reference the Hopper
// kernel is checked against on the GPU.
//
// One CTA computes one layout row (b, h, q_block): kBlockM = block_size queries, one warp per 16 of
// them. It walks the row's key blocks in kKeyTile = 64-key tiles (a block of 128 is two tiles); the
// next tile's K and V are fetched with cp.async while the current one is computed.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/attention_common.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/sparse_attention_params.cuh"
#include "dynamicrad/error.h"

namespace dynamicrad::cuda {

namespace {

constexpr int kKeyTile = 64;  // keys per pipeline stage: 2 x 64 x 128 x 2 B of K and V = 64 KB

// Shared-memory tiles are [rows][head_dim] 16-bit elements with the 16-byte chunks of each row
// XOR-swizzled by (row % 8): the 8 rows an ldmatrix reads at one column then hit 8 different bank
// groups (rows are 128 or 256 bytes, a multiple of the 128-byte bank cycle).
template <int kHeadDim>
__device__ __forceinline__ int swizzle(int row, int col) {
  return row * kHeadDim + ((((col >> 3) ^ row) & 7) | ((col >> 3) & ~7)) * 8 + (col & 7);
}

__device__ __forceinline__ void cp_async_16(std::uint32_t dst, const void* src, int src_bytes) {
  // src_bytes = 0 zero-fills the 16 bytes without reading (rows past the sequence end).
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], std::uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c[16 x 8] += a[16 x 16] * b[16 x 8], fp32 accumulation.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                          std::uint32_t b1);
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&c)[4], const std::uint32_t (&a)[4],
                                                         std::uint32_t b0, std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                                  std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ std::uint32_t smem_addr(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

// Copies `rows` token rows starting at `first` of one (b, h) slice into a swizzled shared tile,
// zero-filling rows at or past `tokens`.
template <int kHeadDim, int kThreads>
__device__ __forceinline__ void load_rows(std::uint16_t* tile, const std::uint16_t* slice, std::int64_t token_stride,
                                          int first, int rows, int tokens) {
  constexpr int kChunks = kHeadDim / 8;  // 16-byte chunks per row
  for (int i = threadIdx.x; i < rows * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const int token = first + r;
    const bool inside = token < tokens;
    const std::uint16_t* src = slice + static_cast<std::int64_t>(inside ? token : 0) * token_stride + c * 8;
    cp_async_16(smem_addr(tile + swizzle<kHeadDim>(r, c * 8)), src, inside ? 16 : 0);
  }
}

template <typename T, int kHeadDim, int kBlockM>
__global__ void __launch_bounds__(kBlockM * 2, 1)
    mma_sync_attention_kernel(const __grid_constant__ SparseAttentionParams p) {
  constexpr int kThreads = kBlockM * 2;            // one warp per 16 queries
  constexpr int kTilesPerBlock = kBlockM / kKeyTile;
  constexpr int kDimTiles = kHeadDim / 8;          // n8 tiles of the output row
  constexpr int kDimSteps = kHeadDim / 16;         // k16 steps of Q K^T
  constexpr int kKeyTiles = kKeyTile / 8;          // n8 tiles of the score row
  constexpr int kChunks = kHeadDim / 8;            // 16-byte chunks per token row

  extern __shared__ __align__(128) std::uint16_t smem[];
  std::uint16_t* const s_q = smem;                               // [kBlockM][kHeadDim]
  std::uint16_t* const s_k = s_q + kBlockM * kHeadDim;           // [2][kKeyTile][kHeadDim]
  std::uint16_t* const s_v = s_k + 2 * kKeyTile * kHeadDim;      // [2][kKeyTile][kHeadDim]

  const int row = p.row_order[blockIdx.x];
  const RowCoords rc = row_coords(p, row);
  const std::int64_t begin = row_begin(p, row);
  const int tiles = static_cast<int>(row_end(p, row) - begin) * kTilesPerBlock;
  const std::int64_t token_stride = static_cast<std::int64_t>(p.heads) * kHeadDim;
  const std::int64_t slice = static_cast<std::int64_t>(rc.b) * p.tokens * token_stride + rc.h * kHeadDim;
  const auto* q = static_cast<const std::uint16_t*>(p.q) + slice;
  const auto* k = static_cast<const std::uint16_t*>(p.k) + slice;
  const auto* v = static_cast<const std::uint16_t*>(p.v) + slice;
  auto* out = static_cast<std::uint16_t*>(p.out) + slice;
  float* lse = p.lse == nullptr ? nullptr
                                : p.lse + (static_cast<std::int64_t>(rc.b) * p.heads + rc.h) * p.tokens;
  const int q0 = rc.q_block * kBlockM;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;  // accumulator row group and column pair of this lane

  if (tiles == 0) {  // the layout keeps nothing: output 0, log-sum-exp -inf
    for (int i = threadIdx.x; i < kBlockM * kChunks; i += kThreads) {
      const int r = i / kChunks, c = i % kChunks;
      if (q0 + r < p.tokens) {
        *reinterpret_cast<uint4*>(out + (q0 + r) * token_stride + c * 8) = make_uint4(0, 0, 0, 0);
      }
    }
    if (lse != nullptr && threadIdx.x < kBlockM && q0 + threadIdx.x < p.tokens) lse[q0 + threadIdx.x] = -INFINITY;
    return;
  }

  auto key_start = [&](int tile) {
    return key_block(p, begin + tile / kTilesPerBlock) * kBlockM + (tile % kTilesPerBlock) * kKeyTile;
  };

  load_rows<kHeadDim, kThreads>(s_q, q, token_stride, q0, kBlockM, p.tokens);
  int start = key_start(0);
  load_rows<kHeadDim, kThreads>(s_k, k, token_stride, start, kKeyTile, p.tokens);
  load_rows<kHeadDim, kThreads>(s_v, v, token_stride, start, kKeyTile, p.tokens);
  cp_async_commit();

  float o[kDimTiles][4];
#pragma unroll
  for (int i = 0; i < kDimTiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  RowState state[2] = {{-INFINITY, 0.0f}, {-INFINITY, 0.0f}};  // rows g and g + 8 of this warp
  std::uint32_t q_frag[kDimSteps][4];

  for (int tile = 0; tile < tiles; ++tile) {
    const int stage = tile & 1;
    int next_start = 0;
    if (tile + 1 < tiles) {  // prefetch the next tile into the other stage
      next_start = key_start(tile + 1);
      std::uint16_t* k_next = s_k + (stage ^ 1) * kKeyTile * kHeadDim;
      std::uint16_t* v_next = s_v + (stage ^ 1) * kKeyTile * kHeadDim;
      load_rows<kHeadDim, kThreads>(k_next, k, token_stride, next_start, kKeyTile, p.tokens);
      load_rows<kHeadDim, kThreads>(v_next, v, token_stride, next_start, kKeyTile, p.tokens);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    if (tile == 0) {
#pragma unroll
      for (int kk = 0; kk < kDimSteps; ++kk) {
        const int r = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        ldmatrix_x4(q_frag[kk], smem_addr(s_q + swizzle<kHeadDim>(r, kk * 16 + (lane >> 4) * 8)));
      }
    }

    // S = Q K^T for this warp's 16 queries and the tile's 64 keys.
    const std::uint16_t* k_tile = s_k + stage * kKeyTile * kHeadDim;
    float s[kKeyTiles][4];
#pragma unroll
    for (int j = 0; j < kKeyTiles; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int n2 = 0; n2 < kKeyTiles / 2; ++n2) {
#pragma unroll
      for (int kk = 0; kk < kDimSteps; ++kk) {
        std::uint32_t b[4];
        const int r = n2 * 16 + (lane & 7) + (lane >> 4) * 8;
        ldmatrix_x4(b, smem_addr(k_tile + swizzle<kHeadDim>(r, kk * 16 + ((lane >> 3) & 1) * 8)));
        mma_16816<T>(s[2 * n2], q_frag[kk], b[0], b[1]);
        mma_16816<T>(s[2 * n2 + 1], q_frag[kk], b[2], b[3]);
      }
    }

    if (start + kKeyTile > p.tokens) {  // the sequence ends inside this tile: mask the keys past it
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (start + j * 8 + 2 * t + (e & 1) >= p.tokens) s[j][e] = -INFINITY;
    }

    // Online softmax: new running max, rescale the partial output, P = exp2(scaled S - max).
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j) tile_max = fmaxf(tile_max, fmaxf(s[j][2 * half], s[j][2 * half + 1]));
      // scale > 0 (checked at planning), so max(score) * scale is the max of the scaled scores.
      const float new_max = fmaxf(state[half].max, quad_max(tile_max) * p.scale_log2);
      const float use_max = safe_max(new_max);
      const float alpha = fast_exp2(state[half].max - use_max);
      state[half].max = new_max;
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j)
#pragma unroll
        for (int e = 2 * half; e < 2 * half + 2; ++e) {
          s[j][e] = fast_exp2(fmaf(s[j][e], p.scale_log2, -use_max));
          sum += s[j][e];
        }
      state[half].sum = state[half].sum * alpha + sum;
#pragma unroll
      for (int i = 0; i < kDimTiles; ++i) {
        o[i][2 * half] *= alpha;
        o[i][2 * half + 1] *= alpha;
      }
    }

    // O += P V: the score accumulators are already laid out as the A fragments of the next mma.
    const std::uint16_t* v_tile = s_v + stage * kKeyTile * kHeadDim;
#pragma unroll
    for (int kk = 0; kk < kKeyTile / 16; ++kk) {
      const std::uint32_t a[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                                  pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                  pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int d2 = 0; d2 < kDimSteps; ++d2) {
        std::uint32_t b[4];
        const int r = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        ldmatrix_x4_trans(b, smem_addr(v_tile + swizzle<kHeadDim>(r, d2 * 16 + (lane >> 4) * 8)));
        mma_16816<T>(o[2 * d2], a, b[0], b[1]);
        mma_16816<T>(o[2 * d2 + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // every warp is done with this stage before the next prefetch overwrites it
    start = next_start;
  }

  // Normalise and store; the quad adds its partial row sums first.
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const float total = quad_sum(state[half].sum);
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    const int token = q0 + warp * 16 + g + 8 * half;
    if (token < p.tokens) {
      std::uint16_t* dst = out + token * token_stride + 2 * t;
#pragma unroll
      for (int i = 0; i < kDimTiles; ++i) {
        *reinterpret_cast<std::uint32_t*>(dst + i * 8) = pack2<T>(o[i][2 * half] * inv, o[i][2 * half + 1] * inv);
      }
      if (lse != nullptr && t == 0) {
        lse[token] = total > 0.0f ? (safe_max(state[half].max) + __log2f(total)) * kLn2 : -INFINITY;
      }
    }
  }
}

template <typename T, int kHeadDim, int kBlockM>
constexpr int mma_sync_smem_bytes() {
  return (kBlockM + 4 * kKeyTile) * kHeadDim * 2;
}

template <typename T, int kHeadDim, int kBlockM>
void prepare() {
  check_cuda(cudaFuncSetAttribute(mma_sync_attention_kernel<T, kHeadDim, kBlockM>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  mma_sync_smem_bytes<T, kHeadDim, kBlockM>()),
             "cudaFuncSetAttribute(mma_sync_attention_kernel)");
}

template <typename T, int kHeadDim, int kBlockM>
void launch(const SparseAttentionParams& params, cudaStream_t stream) {
  if (params.num_rows == 0) return;
  mma_sync_attention_kernel<T, kHeadDim, kBlockM>
      <<<params.num_rows, kBlockM * 2, mma_sync_smem_bytes<T, kHeadDim, kBlockM>(), stream>>>(params);
  check_cuda(cudaGetLastError(), "mma_sync_attention_kernel launch");
}

// Calls f.template operator()<T, kHeadDim, kBlockM>() for the runtime choice.
template <typename F>
void dispatch(ElementType type, int head_dim, int block_size, F&& f) {
  auto by_block = [&](auto type_tag, auto dim_tag) {
    using T = decltype(type_tag);
    constexpr int kDim = decltype(dim_tag)::value;
    if (block_size == 128) return f.template operator()<T, kDim, 128>();
    if (block_size == 64) return f.template operator()<T, kDim, 64>();
    throw Error("layout.block_size", std::to_string(block_size) + ": the CUDA kernels take 64 or 128");
  };
  auto by_dim = [&](auto type_tag) {
    if (head_dim == 128) return by_block(type_tag, std::integral_constant<int, 128>{});
    if (head_dim == 64) return by_block(type_tag, std::integral_constant<int, 64>{});
    throw Error("options.head_dim", std::to_string(head_dim) + ": the CUDA kernels take 64 or 128");
  };
  if (type == ElementType::bf16) return by_dim(__nv_bfloat16{});
  return by_dim(__half{});
}

struct Preparer {
  template <typename T, int kHeadDim, int kBlockM>
  void operator()() const { prepare<T, kHeadDim, kBlockM>(); }
};

struct Launcher {
  const SparseAttentionParams& params;
  cudaStream_t stream;
  template <typename T, int kHeadDim, int kBlockM>
  void operator()() const { launch<T, kHeadDim, kBlockM>(params, stream); }
};

}  // namespace

void prepare_mma_sync_attention(ElementType type, int head_dim, int block_size) {
  dispatch(type, head_dim, block_size, Preparer{});
}

void launch_mma_sync_attention(const SparseAttentionParams& params, ElementType type, int head_dim,
                               int block_size, cudaStream_t stream) {
  dispatch(type, head_dim, block_size, Launcher{params, stream});
}

}  // namespace dynamicrad::cuda
