// Block-sparse attention for Hopper (sm_90a): TMA loads, wgmma, warp specialisation, a persistent
// grid. Layout block 128 only (the tile shapes below are the layout's blocks).
//
// A CTA is three warpgroups:
//   warpgroup 0  producer: one thread issues TMA loads of Q (once per row) and of each kept key
//                block's K and V into a ring of kStages shared-memory stages, gated by mbarriers;
//                it gives most of its registers to the consumers (setmaxnreg).
//   warpgroups 1, 2  consumers: each owns 64 of the row's 128 queries. Per key block j:
//                S_j = Q K_j^T (wgmma, both operands in shared memory), online softmax in registers,
//                O += P_j V_j (wgmma, P from registers, V transposed by the descriptor).
// Two overlaps hide the softmax (its 64 x 128 exp2 per warpgroup and block run on the SFU at 16 per
// clock per SM, about half the time of the block's two GEMMs):
//   * inside a warpgroup, S_{j+1} and P_j V_j are issued before the softmax of S_{j+1} runs, so the
//     tensor cores work while this warpgroup computes exp2; P_{j+1} overwrites P_j's registers only
//     once P_j V_j has retired (registers: O, one score tile, one P tile);
//   * between the warpgroups, named barriers make them issue their GEMMs in turn ("ping-pong"), so
//     one warpgroup's softmax runs under the other's GEMMs.
// The grid is persistent: each CTA runs the list of rows the plan assigned to it (balanced by work,
// see cuda_attention.cu), so the next row's Q and first K/V blocks load while the current row
// finishes.
//
// Shared-memory tiles are written by TMA with the 128-byte swizzle: a tile of R rows x head_dim
// columns is stored as head_dim / 64 column chunks of R x 64 elements (R x 128 bytes each), the
// form wgmma descriptors read directly. Q, K and V come straight from [batch, tokens, heads, dim]
// through 4D tensor maps (dims {dim, heads, tokens, batch}), so no head is ever copied or
// transposed; keys past the sequence end arrive as zeros and are masked to -inf.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/attention_common.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/hopper.cuh"
#include "cuda/sparse_attention_params.cuh"
#include "dynamicrad/error.h"

namespace dynamicrad::cuda {

namespace {

using namespace sm90;

// Tile shapes and resources for one head dimension and pipeline depth.
template <int kHeadDim, int kStagesArg>
struct WgmmaTraits {
  static constexpr int kBlockM = 128;         // queries per row: 2 consumer warpgroups x 64 (wgmma M)
  static constexpr int kBlockN = 128;         // keys per stage: one layout block (wgmma N of Q K^T)
  static constexpr int kChunkCols = 64;       // 16-bit elements per 128-byte swizzled row
  static constexpr int kChunks = kHeadDim / kChunkCols;
  static constexpr int kChunkBytes = 128 * 128;                  // 128 rows x 128 bytes
  static constexpr int kTileBytes = kChunks * kChunkBytes;       // Q, K or V tile
  // K and V stages (see default_wgmma_stages()).
  static constexpr int kStages = kStagesArg;
  static constexpr int kKeySteps = kHeadDim / 16;                // k16 steps of Q K^T
  static constexpr int kValueSteps = kBlockN / 16;               // k16 steps of P V
  static constexpr int kScoreRegs = kBlockN / 2;                 // fp32 S accumulators per thread
  static constexpr int kOutRegs = kHeadDim / 2;                  // fp32 O accumulators per thread
  static constexpr int kThreads = 3 * 128;
  // Register split (65536 per SM, one CTA): the producer thread needs few; 24 + 2 x 240 per thread
  // x 128 threads = 64512 <= 65536.
  static constexpr int kProducerRegisters = 24;
  static constexpr int kConsumerRegisters = 240;
  static constexpr int kBarrierBytes = 1024;
  static constexpr int kSmemBytes = kTileBytes * (1 + 2 * kStages) + kBarrierBytes + 1024;  // + alignment
  // 227 KB is the most shared memory one block may opt into on sm_90.
  static_assert(kSmemBytes <= 227 * 1024, "the K/V stages do not fit in shared memory");
};

// mbarriers of one CTA (placed after the tiles).
template <int kStages>
struct Barriers {
  std::uint64_t q_full;
  std::uint64_t q_empty;
  std::uint64_t k_full[kStages];
  std::uint64_t k_empty[kStages];
  std::uint64_t v_full[kStages];
  std::uint64_t v_empty[kStages];
};

// K/V stages for head_dim 128 unless the plan asks otherwise. Measured on an H100 (2026-11-26, bf16,
// Wan 720p / HunyuanVideo 720p shapes, densities 0.15 and 1, three runs): 3 stages ran from 5% faster
// to 3% slower than 2, no consistent winner; 2 (as FlashAttention-3) leaves ~60 KB for L1.
constexpr int kDefaultStages128 = 2;

// Named barrier ids 1 and 2: "consumer c may issue its GEMMs now" (0 is __syncthreads).
constexpr int kPingPongBarrier = 1;
constexpr int kConsumerThreads = 256;
// Each empty barrier (and q_empty) collects one arrival per consumer warp: each warp's
// wgmma.wait_group covers its own part of the warpgroup's operation.
constexpr int kConsumerWarps = 8;

// accumulate = 0 on the first k step overwrites the previous tile's scores. (A write-only form of
// the instruction made ptxas reserve more registers and spill; this one does not.)
template <typename T>
__device__ __forceinline__ void wgmma_scores(float (&d)[64], std::uint64_t a, std::uint64_t b, int accumulate) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    wgmma_m64n128k16_ss_bf16(d, a, b, accumulate);
  } else {
    wgmma_m64n128k16_ss_f16(d, a, b, accumulate);
  }
}

template <typename T, int N>
__device__ __forceinline__ void wgmma_values(float (&d)[N / 2], const std::uint32_t (&a)[4], std::uint64_t b) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    if constexpr (N == 128) wgmma_m64n128k16_rs_bf16(d, a, b, 1); else wgmma_m64n64k16_rs_bf16(d, a, b, 1);
  } else {
    if constexpr (N == 128) wgmma_m64n128k16_rs_f16(d, a, b, 1); else wgmma_m64n64k16_rs_f16(d, a, b, 1);
  }
}

// Online softmax of one 64 x 128 score tile, in place: updates the two row states (rows g and g + 8
// of the warp), turns the scores into unnormalised probabilities exp2(scaled score - running max)
// and returns the factors that move O to the new running max.
// Accumulator i of lane (g, t) is row g + 8 ((i / 2) % 2), key column (i / 4) * 8 + 2 t + (i % 2);
// columns at or past `valid` (keys past the sequence end, only in the last block) are masked.
template <int kRegs>
__device__ __forceinline__ void online_softmax(float (&x)[kRegs], int valid, int t, RowState (&state)[2],
                                               float (&alpha)[2], float scale_log2) {
  if (valid < 2 * kRegs) {
#pragma unroll
    for (int i = 0; i < kRegs; ++i) {
      if ((i / 4) * 8 + 2 * t + (i % 2) >= valid) x[i] = -INFINITY;
    }
  }
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float tile_max = -INFINITY;
#pragma unroll
    for (int i = 0; i < kRegs; i += 4) tile_max = fmaxf(tile_max, fmaxf(x[i + 2 * half], x[i + 2 * half + 1]));
    // scale > 0 (checked at planning), so max(score) * scale is the max of the scaled scores.
    const float new_max = fmaxf(state[half].max, quad_max(tile_max) * scale_log2);
    const float use_max = safe_max(new_max);
    alpha[half] = fast_exp2(state[half].max - use_max);
    state[half].max = new_max;
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < kRegs; i += 4) {
      x[i + 2 * half] = fast_exp2(fmaf(x[i + 2 * half], scale_log2, -use_max));
      x[i + 2 * half + 1] = fast_exp2(fmaf(x[i + 2 * half + 1], scale_log2, -use_max));
      sum += x[i + 2 * half] + x[i + 2 * half + 1];
    }
    state[half].sum = state[half].sum * alpha[half] + sum;
  }
}

// Rounds the probabilities to 16 bits as the A fragments of the P V wgmma. k16 step kk covers key
// columns 16 kk .. 16 kk + 15: n8 tiles 2 kk (accumulators 8 kk .. 8 kk + 3) and 2 kk + 1
// (8 kk + 4 .. 8 kk + 7), which is exactly the m16n8k16 A fragment order.
template <typename T, int kRegs>
__device__ __forceinline__ void to_fragments(const float (&x)[kRegs], std::uint32_t (&p)[kRegs / 8][4]) {
#pragma unroll
  for (int kk = 0; kk < kRegs / 8; ++kk) {
    p[kk][0] = pack2<T>(x[8 * kk + 0], x[8 * kk + 1]);
    p[kk][1] = pack2<T>(x[8 * kk + 2], x[8 * kk + 3]);
    p[kk][2] = pack2<T>(x[8 * kk + 4], x[8 * kk + 5]);
    p[kk][3] = pack2<T>(x[8 * kk + 6], x[8 * kk + 7]);
  }
}

template <typename T, int kHeadDim, int kStagesArg>
__global__ void __launch_bounds__(WgmmaTraits<kHeadDim, kStagesArg>::kThreads, 1)
    wgmma_attention_kernel(const __grid_constant__ SparseAttentionParams p, const __grid_constant__ CUtensorMap tm_q,
                           const __grid_constant__ CUtensorMap tm_k, const __grid_constant__ CUtensorMap tm_v) {
  using Traits = WgmmaTraits<kHeadDim, kStagesArg>;
  constexpr int kStages = Traits::kStages;
  extern __shared__ unsigned char smem_raw[];
  // 128-byte swizzled tiles must start on 1024-byte boundaries (descriptor base offset 0).
  unsigned char* smem = reinterpret_cast<unsigned char*>(
      (reinterpret_cast<std::uintptr_t>(smem_raw) + 1023) & ~static_cast<std::uintptr_t>(1023));
  unsigned char* const s_q = smem;
  unsigned char* const s_k = s_q + Traits::kTileBytes;                      // [kStages] tiles
  unsigned char* const s_v = s_k + kStages * Traits::kTileBytes;            // [kStages] tiles
  auto* const bars = reinterpret_cast<Barriers<kStages>*>(s_v + kStages * Traits::kTileBytes);

  const int warpgroup = threadIdx.x / 128;
  if (threadIdx.x == 0) {
    mbarrier_init(&bars->q_full, 1);
    mbarrier_init(&bars->q_empty, kConsumerWarps);
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      mbarrier_init(&bars->k_full[s], 1);
      mbarrier_init(&bars->k_empty[s], kConsumerWarps);
      mbarrier_init(&bars->v_full[s], 1);
      mbarrier_init(&bars->v_empty[s], kConsumerWarps);
    }
    mbarrier_init_fence();
  }
  __syncthreads();

  if (warpgroup == 0) {
    // ---------------------------------------------------------------- producer
    warpgroup_reg_dealloc<Traits::kProducerRegisters>();
    if (threadIdx.x == 0) {
      prefetch_tensor_map(&tm_q);
      prefetch_tensor_map(&tm_k);
      prefetch_tensor_map(&tm_v);
      std::uint32_t q_round = 0;
      std::uint32_t kv_iter = 0;
      for (int tile = p.cta_offsets[blockIdx.x]; tile < p.cta_offsets[blockIdx.x + 1]; ++tile) {
        const int row = p.row_order[tile];
        const std::int64_t begin = row_begin(p, row), end = row_end(p, row);
        if (begin == end) continue;
        const RowCoords rc = row_coords(p, row);
        mbarrier_wait(&bars->q_empty, (q_round & 1) ^ 1);
        mbarrier_arrive_expect_tx(&bars->q_full, Traits::kTileBytes);
#pragma unroll
        for (int c = 0; c < Traits::kChunks; ++c) {
          tma_load_4d(s_q + c * Traits::kChunkBytes, &tm_q, &bars->q_full, c * Traits::kChunkCols, rc.h,
                      rc.q_block * Traits::kBlockM, rc.b);
        }
        ++q_round;
        for (std::int64_t e = begin; e < end; ++e, ++kv_iter) {
          const int key0 = key_block(p, e) * Traits::kBlockN;
          const int stage = kv_iter % kStages;
          const std::uint32_t phase = (kv_iter / kStages) & 1;
          unsigned char* const k_tile = s_k + stage * Traits::kTileBytes;
          unsigned char* const v_tile = s_v + stage * Traits::kTileBytes;
          mbarrier_wait(&bars->k_empty[stage], phase ^ 1);
          mbarrier_arrive_expect_tx(&bars->k_full[stage], Traits::kTileBytes);
#pragma unroll
          for (int c = 0; c < Traits::kChunks; ++c) {
            tma_load_4d(k_tile + c * Traits::kChunkBytes, &tm_k, &bars->k_full[stage], c * Traits::kChunkCols, rc.h,
                        key0, rc.b);
          }
          mbarrier_wait(&bars->v_empty[stage], phase ^ 1);
          mbarrier_arrive_expect_tx(&bars->v_full[stage], Traits::kTileBytes);
#pragma unroll
          for (int c = 0; c < Traits::kChunks; ++c) {
            tma_load_4d(v_tile + c * Traits::kChunkBytes, &tm_v, &bars->v_full[stage], c * Traits::kChunkCols, rc.h,
                        key0, rc.b);
          }
        }
      }
    }
  } else {
    // ---------------------------------------------------------------- consumers
    warpgroup_reg_alloc<Traits::kConsumerRegisters>();
    const int consumer = warpgroup - 1;                 // 0 or 1: queries 64 * consumer .. + 63 of a row
    const int tid = threadIdx.x - 128 * warpgroup;
    const int warp = tid / 32, lane = tid % 32;
    const int g = lane / 4, t = lane % 4;               // accumulator row group and column pair
    const bool warp_leader = lane == 0;
    const std::int64_t token_stride = static_cast<std::int64_t>(p.heads) * kHeadDim;

    // Descriptors: Q rows of this warpgroup (K-major), K (K-major), V (MN-major, dim contiguous).
    const std::uint32_t q_base = smem_u32(s_q) + consumer * 64 * 128;
    const std::uint32_t k_base = smem_u32(s_k);
    const std::uint32_t v_base = smem_u32(s_v);
    auto q_desc = [&](int kk) {
      return make_smem_desc(q_base + (kk / 4) * Traits::kChunkBytes + (kk % 4) * 32, 16, 1024);
    };
    auto k_desc = [&](int stage, int kk) {
      return make_smem_desc(k_base + stage * Traits::kTileBytes + (kk / 4) * Traits::kChunkBytes + (kk % 4) * 32, 16,
                            1024);
    };
    auto v_desc = [&](int stage, int kk) {
      return make_smem_desc(v_base + stage * Traits::kTileBytes + kk * 16 * 128, Traits::kChunkBytes, 1024);
    };
    auto issue_scores = [&](float (&s)[Traits::kScoreRegs], int stage) {
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < Traits::kKeySteps; ++kk) wgmma_scores<T>(s, q_desc(kk), k_desc(stage, kk), kk > 0);
      wgmma_commit();
    };
    auto issue_values = [&](float (&o)[Traits::kOutRegs], std::uint32_t (&pf)[Traits::kValueSteps][4], int stage) {
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < Traits::kValueSteps; ++kk) wgmma_values<T, kHeadDim>(o, pf[kk], v_desc(stage, kk));
      wgmma_commit();
    };
    // Ping-pong: wait for this warpgroup's turn to issue GEMMs / hand the turn to the other one.
    auto my_turn = [&]() { named_barrier_sync(kPingPongBarrier + consumer, kConsumerThreads); };
    auto their_turn = [&]() { named_barrier_arrive(kPingPongBarrier + (1 - consumer), kConsumerThreads); };
    if (consumer == 1) their_turn();  // consumer 0 goes first

    float s[Traits::kScoreRegs];
#pragma unroll
    for (int i = 0; i < Traits::kScoreRegs; ++i) s[i] = 0.0f;  // defined before the first wgmma reads it
    float o[Traits::kOutRegs];
    std::uint32_t p_frag[Traits::kValueSteps][4];  // P of the key block whose P V is next

    std::uint32_t q_round = 0;
    std::uint32_t kv_iter = 0;
    for (int tile = p.cta_offsets[blockIdx.x]; tile < p.cta_offsets[blockIdx.x + 1]; ++tile) {
      const int row = p.row_order[tile];
      const std::int64_t begin = row_begin(p, row);
      const int n = static_cast<int>(row_end(p, row) - begin);
      const RowCoords rc = row_coords(p, row);
      const std::int64_t slice =
          static_cast<std::int64_t>(rc.b) * p.tokens * token_stride + static_cast<std::int64_t>(rc.h) * kHeadDim;
      auto* out = static_cast<std::uint16_t*>(p.out) + slice;
      float* lse = p.lse == nullptr ? nullptr : p.lse + (static_cast<std::int64_t>(rc.b) * p.heads + rc.h) * p.tokens;
      const int q0 = rc.q_block * Traits::kBlockM + consumer * 64;  // first query of this warpgroup

      if (n == 0) {  // the layout keeps nothing: output 0, log-sum-exp -inf
        constexpr int kRowChunks = kHeadDim / 8;
        for (int i = tid; i < 64 * kRowChunks; i += 128) {
          const int r = i / kRowChunks, c = i % kRowChunks;
          if (q0 + r < p.tokens) {
            *reinterpret_cast<uint4*>(out + (q0 + r) * token_stride + c * 8) = make_uint4(0, 0, 0, 0);
          }
        }
        if (lse != nullptr && tid < 64 && q0 + tid < p.tokens) lse[q0 + tid] = -INFINITY;
        continue;
      }

#pragma unroll
      for (int i = 0; i < Traits::kOutRegs; ++i) o[i] = 0.0f;
      RowState state[2] = {{-INFINITY, 0.0f}, {-INFINITY, 0.0f}};
      float alpha[2];

      mbarrier_wait(&bars->q_full, q_round & 1);
      ++q_round;

      // Prologue: S_0 and its softmax.
      int stage = kv_iter % kStages;
      mbarrier_wait(&bars->k_full[stage], (kv_iter / kStages) & 1);
      my_turn();
      issue_scores(s, stage);
      their_turn();
      wgmma_wait<0>();
#pragma unroll
      for (int i = 0; i < Traits::kScoreRegs; ++i) fence_operand(s[i]);
      if (warp_leader) {
        mbarrier_arrive(&bars->k_empty[stage]);
        if (n == 1) mbarrier_arrive(&bars->q_empty);
      }
      online_softmax(s, p.tokens - key_block(p, begin) * Traits::kBlockN, t, state, alpha, p.scale_log2);
      to_fragments<T>(s, p_frag);

      // Steady state, block j: issue S_j, rescale O for block j-1's max, issue P_{j-1} V_{j-1}; the
      // softmax of S_j runs while P V is in flight, and P_j overwrites P_{j-1} only after it is done.
      for (int j = 1; j < n; ++j) {
        const int prev_stage = stage;
        const std::uint32_t prev_iter = kv_iter;
        ++kv_iter;
        stage = kv_iter % kStages;
        mbarrier_wait(&bars->k_full[stage], (kv_iter / kStages) & 1);
        my_turn();
        issue_scores(s, stage);
#pragma unroll
        for (int i = 0; i < Traits::kOutRegs; ++i) o[i] *= alpha[(i / 2) % 2];
        mbarrier_wait(&bars->v_full[prev_stage], (prev_iter / kStages) & 1);
        issue_values(o, p_frag, prev_stage);
        their_turn();
        wgmma_wait<1>();  // S_j is done; P_{j-1} V_{j-1} may still run
#pragma unroll
        for (int i = 0; i < Traits::kScoreRegs; ++i) fence_operand(s[i]);
        if (warp_leader) {
          mbarrier_arrive(&bars->k_empty[stage]);
          if (j == n - 1) mbarrier_arrive(&bars->q_empty);
        }
        online_softmax(s, p.tokens - key_block(p, begin + j) * Traits::kBlockN, t, state, alpha, p.scale_log2);
        wgmma_wait<0>();
#pragma unroll
        for (int i = 0; i < Traits::kOutRegs; ++i) fence_operand(o[i]);
#pragma unroll
        for (int kk = 0; kk < Traits::kValueSteps; ++kk)
#pragma unroll
          for (int r = 0; r < 4; ++r) fence_operand(p_frag[kk][r]);
        if (warp_leader) mbarrier_arrive(&bars->v_empty[prev_stage]);
        to_fragments<T>(s, p_frag);
      }

      // Epilogue: the last P V.
#pragma unroll
      for (int i = 0; i < Traits::kOutRegs; ++i) o[i] *= alpha[(i / 2) % 2];
      mbarrier_wait(&bars->v_full[stage], (kv_iter / kStages) & 1);
      my_turn();
      issue_values(o, p_frag, stage);
      their_turn();
      wgmma_wait<0>();
#pragma unroll
      for (int i = 0; i < Traits::kOutRegs; ++i) fence_operand(o[i]);
      if (warp_leader) mbarrier_arrive(&bars->v_empty[stage]);
      ++kv_iter;

      // Normalise and store; the quad adds its partial row sums first. Accumulator i of lane (g, t)
      // is row g + 8 ((i / 2) % 2), column (i / 4) * 8 + 2 t + (i % 2).
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const float total = quad_sum(state[half].sum);
        const float inv = total > 0.0f ? 1.0f / total : 0.0f;
        const int token = q0 + warp * 16 + g + 8 * half;
        if (token < p.tokens) {
          std::uint16_t* dst = out + token * token_stride + 2 * t;
#pragma unroll
          for (int i = 2 * half; i < Traits::kOutRegs; i += 4) {
            *reinterpret_cast<std::uint32_t*>(dst + (i / 4) * 8) = pack2<T>(o[i] * inv, o[i + 1] * inv);
          }
          if (lse != nullptr && t == 0) {
            lse[token] = total > 0.0f ? (safe_max(state[half].max) + __log2f(total)) * kLn2 : -INFINITY;
          }
        }
      }
    }
  }
}

// cuTensorMapEncodeTiled through the runtime's driver entry point (no link against libcuda).
using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiled encode_tiled() {
  static const EncodeTiled fn = [] {
    void* symbol = nullptr;
    cudaDriverEntryPointQueryResult found{};
    check_cuda(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &symbol, 12000, cudaEnableDefault, &found),
               "cudaGetDriverEntryPointByVersion(cuTensorMapEncodeTiled)");
    if (found != cudaDriverEntryPointSuccess || symbol == nullptr) {
      throw Error("cuda", "the driver does not provide cuTensorMapEncodeTiled");
    }
    return reinterpret_cast<EncodeTiled>(symbol);
  }();
  return fn;
}

// A 4D map over [batch, tokens, heads, head_dim] (dims listed innermost first) whose box is one
// 64-column chunk of 128 tokens of one head.
CUtensorMap make_tensor_map(const void* data, ElementType type, const SparseAttentionParams& p, int head_dim,
                            const char* field) {
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(head_dim), static_cast<cuuint64_t>(p.heads),
                              static_cast<cuuint64_t>(p.tokens), static_cast<cuuint64_t>(p.batch)};
  const cuuint64_t element = 2;
  const cuuint64_t strides[3] = {head_dim * element, p.heads * head_dim * element,
                                 static_cast<cuuint64_t>(p.tokens) * p.heads * head_dim * element};
  const cuuint32_t box[4] = {64, 1, 128, 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  CUtensorMap map;
  const CUresult status = encode_tiled()(
      &map, type == ElementType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
      const_cast<void*>(data), dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (status != CUDA_SUCCESS) {
    throw Error(field, "cuTensorMapEncodeTiled failed with CUresult " + std::to_string(static_cast<int>(status)) +
                           " (the pointer must be 16-byte aligned)");
  }
  return map;
}

template <typename T, int kHeadDim, int kStages>
void prepare() {
  check_cuda(cudaFuncSetAttribute(wgmma_attention_kernel<T, kHeadDim, kStages>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, WgmmaTraits<kHeadDim, kStages>::kSmemBytes),
             "cudaFuncSetAttribute(wgmma_attention_kernel)");
}

template <typename T, int kHeadDim, int kStages>
void launch(const SparseAttentionParams& params, ElementType type, int grid, cudaStream_t stream) {
  using Traits = WgmmaTraits<kHeadDim, kStages>;
  const CUtensorMap tm_q = make_tensor_map(params.q, type, params, kHeadDim, "q");
  const CUtensorMap tm_k = make_tensor_map(params.k, type, params, kHeadDim, "k");
  const CUtensorMap tm_v = make_tensor_map(params.v, type, params, kHeadDim, "v");
  wgmma_attention_kernel<T, kHeadDim, kStages>
      <<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(params, tm_q, tm_k, tm_v);
  check_cuda(cudaGetLastError(), "wgmma_attention_kernel launch");
}

// The instantiated (head_dim, stages) pairs. head_dim 128: 2 stages (Q 32 KB + 2 x 64 KB of K/V) as
// FlashAttention-3 uses, or 3 (224 KB, the shared-memory limit), which keeps two blocks in flight
// while one is computed; head_dim 64 tiles are half the size, so 4 stages fit in less space.
template <typename F>
void dispatch(ElementType type, int head_dim, int stages, F&& f) {
  auto by_dim = [&](auto type_tag) {
    using T = decltype(type_tag);
    if (head_dim == 128 && stages == 2) return f.template operator()<T, 128, 2>();
    if (head_dim == 128 && stages == 3) return f.template operator()<T, 128, 3>();
    if (head_dim == 64 && stages == 4) return f.template operator()<T, 64, 4>();
    throw Error("options.stages", std::to_string(stages) + " stages with head_dim " + std::to_string(head_dim) +
                                      ": allowed are 2 or 3 (head_dim 128) and 4 (head_dim 64)");
  };
  if (type == ElementType::bf16) return by_dim(__nv_bfloat16{});
  return by_dim(__half{});
}

struct Preparer {
  template <typename T, int kHeadDim, int kStages>
  void operator()() const { prepare<T, kHeadDim, kStages>(); }
};

struct Launcher {
  const SparseAttentionParams& params;
  ElementType type;
  int grid;
  cudaStream_t stream;
  template <typename T, int kHeadDim, int kStages>
  void operator()() const { launch<T, kHeadDim, kStages>(params, type, grid, stream); }
};

}  // namespace

int default_wgmma_stages(int head_dim) { return head_dim == 128 ? kDefaultStages128 : 4; }

void prepare_wgmma_attention(ElementType type, int head_dim, int stages) {
  dispatch(type, head_dim, stages, Preparer{});
}

void launch_wgmma_attention(const SparseAttentionParams& params, ElementType type, int head_dim, int stages,
                            int grid, cudaStream_t stream) {
  if (params.num_rows == 0 || grid == 0) return;
  dispatch(type, head_dim, stages, Launcher{params, type, grid, stream});
}

}  // namespace dynamicrad::cuda
