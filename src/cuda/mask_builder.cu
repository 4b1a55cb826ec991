// GPU mask builder (cuda_mask.h): pooling, scoring, selection and CSR compaction on the device.
//
// Kernels, in launch order:
//   pool_kernel     (pool.cuh) one CTA per (block, batch): each thread sums a few elements of the
//                   heads * dim row over the block's tokens in ascending order (the CPU's order),
//                   then multiplies by 1.0f / tokens; blocks whose means came with the call
//                   (PooledPrefix) are copied instead (adopt_pooled_kernel);
//   select_kernel   one CTA per layout row: scores of the prior row (static-ratio: only the entries
//                   it ranks), then the static-ratio ranks or the dynamic-threshold masses, writing a
//                   keep flag per prior entry and the row's count;
//   a CUB inclusive scan of the counts into row_offsets[1..];
//   compact_kernel  one warp per row: writes the kept column indices in ascending order.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cuda/cuda_check.cuh"
#include "cuda/device_memory.cuh"
#include "cuda/element.cuh"
#include "cuda/pool.cuh"
#include "dynamicrad/cuda_mask.h"
#include "dynamicrad/error.h"

namespace dynamicrad {

namespace {

using cuda::check_cuda;

constexpr int kSelectThreads = 128;
constexpr int kWarp = 32;
constexpr int kScoreLanes = 8;  // lanes of block_score()
constexpr int kMaxHeadDim = 512;
constexpr int kNonFiniteQ = 1;
constexpr int kNonFiniteK = 2;

using cuda::to_float;

// Copies block means computed before selection (select.h's PooledPrefix, [batch * heads,
// prefix_blocks, dim]) into the builder's [batch * heads, blocks, dim] buffer, flagging a
// non-finite value as pooling would. One CTA per (batch * head, block).
__global__ void adopt_pooled_kernel(const float* __restrict__ src, std::int64_t prefix_blocks, std::int64_t blocks,
                                    std::int64_t dim, float* __restrict__ dst, int* flags, int flag) {
  const std::int64_t r = blockIdx.x;
  const std::int64_t bh = r / prefix_blocks;
  const std::int64_t blk = r % prefix_blocks;
  bool finite = true;
  for (std::int64_t e = threadIdx.x; e < dim; e += blockDim.x) {
    const float v = src[r * dim + e];
    dst[(bh * blocks + blk) * dim + e] = v;
    finite = finite && isfinite(v);
  }
  if (!finite) atomicOr(flags, flag);
}

// select.h's block_score() by a group of eight threads: thread j of the group is lane j (elements
// j, j + 8, ... in ascending order), and three shuffles combine the lanes as
// ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)) (IEEE addition is commutative, so l1+l0 == l0+l1). Float
// products are exact in double, so contraction into fma cannot change a lane's sum. The lane's
// query elements are held in registers (q_lane[t] = q[j + 8t]), loaded once per row, not once per
// candidate.
template <int kLaneValues>
__device__ __forceinline__ double group_block_score(const float (&q_lane)[kLaneValues], const float* k, std::int64_t dim,
                                                    int lane_in_group) {
  double lane = 0.0;
#pragma unroll
  for (int t = 0; t < kLaneValues; ++t) {
    const std::int64_t e = lane_in_group + static_cast<std::int64_t>(kScoreLanes) * t;
    if (e < dim) lane += static_cast<double>(q_lane[t]) * static_cast<double>(k[e]);
  }
  lane += __shfl_xor_sync(0xffffffffu, lane, 1);
  lane += __shfl_xor_sync(0xffffffffu, lane, 2);
  lane += __shfl_xor_sync(0xffffffffu, lane, 4);
  return lane;
}

struct SelectParams {
  const std::int64_t* prior_offsets;  // [blocks + 1]
  const std::int32_t* prior_cols;     // [prior size]
  const std::uint8_t* prior_kinds;    // [prior size], BlockKind values
  const float* block_tokens;          // [blocks]
  const float* pooled_q;              // [batch * heads, blocks, dim]
  const float* pooled_k;
  std::int64_t blocks;
  std::int64_t dim;
  std::int64_t prior_size;
  double scale;
  int dynamic;  // 0: static-ratio, 1: dynamic-threshold
  double r_near, r_far, tau_near, tau_far;
  std::uint8_t* keep;    // [batch * heads, prior size]
  std::int64_t* counts;  // [rows]
};

constexpr std::uint8_t kForced = static_cast<std::uint8_t>(BlockKind::forced);
constexpr std::uint8_t kNear = static_cast<std::uint8_t>(BlockKind::near);

// Static-ratio order as an integer: a higher score gives a smaller key, equal scores (also -0.0 and
// +0.0) equal keys. The IEEE bits of a non-negative double grow with it; a negative one's shrink.
__device__ __forceinline__ std::uint64_t descending_key(double score) {
  if (score == 0.0) score = 0.0;
  std::uint64_t u = static_cast<std::uint64_t>(__double_as_longlong(score));
  u = (u >> 63) != 0 ? ~u : (u | (1ull << 63));  // now ascending with the score
  return ~u;
}

constexpr int kRadixBits = 8;
constexpr int kRadixBins = 1 << kRadixBits;

// Dynamic shared memory: scores[n_max] (double); weights[n_max] (double, dynamic-threshold only) or,
// in the same space, order[n_max] (int32, static-ratio only); cols[n_max] (int32); kinds[n_max]
// (uint8). 21 bytes an entry: HunyuanVideo 720p's longest rows (931 entries, the text rows) then
// leave room for 9 CTAs an SM, as many as the registers allow (25 bytes allowed 8).
// head_dim <= kScoreLanes * kLaneValues.
template <int kLaneValues>
__global__ void select_kernel(SelectParams p, std::int64_t max_row) {
  extern __shared__ double shared[];
  const std::int64_t row = blockIdx.x;
  const std::int64_t bh = row / p.blocks, r = row % p.blocks;
  const std::int64_t begin = p.prior_offsets[r];
  const int n = static_cast<int>(p.prior_offsets[r + 1] - begin);
  double* scores = shared;
  double* weights = scores + max_row;
  std::int32_t* order = reinterpret_cast<std::int32_t*>(weights);  // static-ratio: the entries to score
  std::int32_t* cols = reinterpret_cast<std::int32_t*>(weights + max_row);
  std::uint8_t* kinds = reinterpret_cast<std::uint8_t*>(cols + max_row);
  __shared__ int near_count, far_count, kept_count, ranked;
  __shared__ double row_max, denominator;
  if (threadIdx.x == 0) {
    near_count = far_count = kept_count = ranked = 0;
    row_max = -INFINITY;
  }
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    cols[i] = p.prior_cols[begin + i];
    kinds[i] = p.prior_kinds[begin + i];
  }
  __syncthreads();

  // Dynamic-threshold weighs every entry; static-ratio never looks at a forced entry's score (forced
  // entries are kept and ranked against nothing), so it scores only the near and far ones, listed
  // in `order` (in any order: each score is stored at its entry).
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const std::uint8_t kind = kinds[i];
    if (kind == kForced) continue;
    atomicAdd(kind == kNear ? &near_count : &far_count, 1);
    if (!p.dynamic) order[atomicAdd(&ranked, 1)] = i;
  }
  __syncthreads();
  const int m = p.dynamic ? n : ranked;
  const float* q = p.pooled_q + (bh * p.blocks + r) * p.dim;
  const float* k_head = p.pooled_k + bh * p.blocks * p.dim;
  const int group = threadIdx.x / kScoreLanes, lane = threadIdx.x % kScoreLanes;
  const int groups = blockDim.x / kScoreLanes;
  float q_lane[kLaneValues];
#pragma unroll
  for (int t = 0; t < kLaneValues; ++t) {
    const std::int64_t e = lane + static_cast<std::int64_t>(kScoreLanes) * t;
    q_lane[t] = e < p.dim ? q[e] : 0.0f;
  }
  // Every thread of a warp takes part in the shuffles, so the loop runs to a bound common to the warp.
  for (int base = 0; base < m; base += groups) {
    const int j = base + group;
    const int last = j < m ? j : m - 1;
    const int entry = p.dynamic ? last : order[last];
    const float* k = k_head + static_cast<std::int64_t>(cols[entry]) * p.dim;
    const double z = group_block_score(q_lane, k, p.dim, lane) * p.scale;
    if (j < m && lane == 0) scores[entry] = z;
  }
  __syncthreads();

  std::uint8_t* keep = p.keep + bh * p.prior_size + begin;
  int kept = 0;
  if (!p.dynamic) {
    // Keep the top ceil(r * n) of each group: an entry's rank is the number of better entries of its
    // group (higher score, ties to the lower column), the CPU's nth_element order. Rather than rank
    // every entry, a radix select finds each group's last kept entry: eight passes over the 8-bit
    // digits of descending_key(), most significant first, narrow down its key and its position
    // among the entries sharing that key; ties on the key are then settled by column.
    const double nn = static_cast<double>(near_count), nf = static_cast<double>(far_count);
    const int want[2] = {static_cast<int>(fmin(nn, ceil(p.r_near * nn))), static_cast<int>(fmin(nf, ceil(p.r_far * nf)))};
    const int size[2] = {near_count, far_count};
    __shared__ unsigned histogram[2][kRadixBins];
    __shared__ std::uint64_t threshold[2];  // the key of each group's last kept entry
    __shared__ int position[2];             // its 1-based position among entries with that key
    if (threadIdx.x < 2) {
      threshold[threadIdx.x] = 0;
      position[threadIdx.x] = want[threadIdx.x];
    }
    for (int shift = 64 - kRadixBits; shift >= 0; shift -= kRadixBits) {
      for (int b = threadIdx.x; b < 2 * kRadixBins; b += blockDim.x) histogram[b / kRadixBins][b % kRadixBins] = 0;
      __syncthreads();
      const std::uint64_t decided = shift + kRadixBits >= 64 ? 0 : ~0ull << (shift + kRadixBits);
      for (int i = threadIdx.x; i < n; i += blockDim.x) {
        if (kinds[i] == kForced) continue;
        const int g = kinds[i] == kNear ? 0 : 1;
        const std::uint64_t key = descending_key(scores[i]);
        if ((key & decided) == (threshold[g] & decided)) atomicAdd(&histogram[g][(key >> shift) & (kRadixBins - 1)], 1u);
      }
      __syncthreads();
      // Warp g finds the bin holding group g's position: each lane owns kRadixBins / 32 bins.
      constexpr int kPerLane = kRadixBins / kWarp;
      const int g = threadIdx.x / kWarp, warp_lane = threadIdx.x % kWarp;
      if (g < 2 && want[g] > 0 && want[g] < size[g]) {
        unsigned count[kPerLane];
        unsigned sum = 0;
        for (int k = 0; k < kPerLane; ++k) sum += count[k] = histogram[g][warp_lane * kPerLane + k];
        unsigned inclusive = sum;
        for (int offset = 1; offset < kWarp; offset <<= 1) {
          const unsigned v = __shfl_up_sync(0xffffffffu, inclusive, offset);
          if (warp_lane >= offset) inclusive += v;
        }
        const unsigned target = static_cast<unsigned>(position[g]);
        __syncwarp();
        unsigned before = inclusive - sum;
        if (before < target && target <= inclusive) {
          int bin = warp_lane * kPerLane;
          for (int k = 0; k < kPerLane && before + count[k] < target; ++k) {
            before += count[k];
            ++bin;
          }
          position[g] = static_cast<int>(target - before);
          threshold[g] |= static_cast<std::uint64_t>(bin) << shift;
        }
      }
      __syncthreads();
    }
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const std::uint8_t kind = kinds[i];
      bool take = kind == kForced;
      if (!take) {
        const int g = kind == kNear ? 0 : 1;
        if (want[g] >= size[g]) {
          take = true;
        } else if (want[g] > 0) {
          const std::uint64_t key = descending_key(scores[i]);
          if (key < threshold[g]) {
            take = true;
          } else if (key == threshold[g]) {
            int ties_before = 0;  // entries of the group with this key and a lower column
            for (int j = 0; j < n; ++j) {
              ties_before += (kinds[j] == kind && descending_key(scores[j]) == key && cols[j] < cols[i]) ? 1 : 0;
            }
            take = ties_before < position[g];
          }
        }
      }
      keep[i] = take ? 1 : 0;
      kept += take ? 1 : 0;
    }
  } else {
    double local_max = -INFINITY;
    for (int i = threadIdx.x; i < n; i += blockDim.x) local_max = fmax(local_max, scores[i]);
    // The maximum is exact whatever the order; a CAS loop keeps it simple.
    unsigned long long* as_bits = reinterpret_cast<unsigned long long*>(&row_max);
    unsigned long long old = *as_bits;
    while (local_max > __longlong_as_double(static_cast<long long>(old))) {
      const unsigned long long seen = atomicCAS(as_bits, old, static_cast<unsigned long long>(__double_as_longlong(local_max)));
      if (seen == old) break;
      old = seen;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      weights[i] = static_cast<double>(p.block_tokens[cols[i]]) * exp(scores[i] - row_max);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      double sum = 0.0;  // in entry order, as on the CPU
      for (int i = 0; i < n; ++i) sum += weights[i];
      denominator = sum;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const std::uint8_t kind = kinds[i];
      const double tau = kind == kNear ? p.tau_near : p.tau_far;
      const bool take = kind == kForced || weights[i] / denominator >= tau;
      keep[i] = take ? 1 : 0;
      kept += take ? 1 : 0;
    }
  }
  atomicAdd(&kept_count, kept);
  __syncthreads();
  if (threadIdx.x == 0) p.counts[row] = kept_count;
}

// One warp per row: kept prior columns, in prior (ascending) order, at row_offsets[row].
__global__ void compact_kernel(const std::int64_t* prior_offsets, const std::int32_t* prior_cols,
                               const std::uint8_t* keep_all, std::int64_t blocks, std::int64_t prior_size,
                               const std::int64_t* row_offsets, std::int32_t* col_indices, std::int64_t rows) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (row >= rows) return;
  const int lane = threadIdx.x % kWarp;
  const std::int64_t bh = row / blocks, r = row % blocks;
  const std::int64_t begin = prior_offsets[r], end = prior_offsets[r + 1];
  const std::uint8_t* keep = keep_all + bh * prior_size;
  std::int64_t out = row_offsets[row];
  for (std::int64_t base = begin; base < end; base += kWarp) {
    const std::int64_t i = base + lane;
    const bool take = i < end && keep[i];
    const unsigned ballot = __ballot_sync(0xffffffffu, take);
    if (take) col_indices[out + __popc(ballot & ((1u << lane) - 1u))] = prior_cols[i];
    out += __popc(ballot);
  }
}

std::size_t select_shared_bytes(std::int64_t max_row) {
  return static_cast<std::size_t>(max_row) * (2 * sizeof(double) + sizeof(std::int32_t) + sizeof(std::uint8_t));
}

}  // namespace

struct CudaMaskBuilder::State {
  RadialPrior prior;
  std::int64_t batch = 0, heads = 0, head_dim = 0, rows = 0, max_row = 0;
  std::vector<void*> owned;
  std::int64_t* prior_offsets = nullptr;
  std::int32_t* prior_cols = nullptr;
  std::uint8_t* prior_kinds = nullptr;
  float* block_tokens = nullptr;
  float* pooled_q = nullptr;
  float* pooled_k = nullptr;
  std::uint8_t* keep = nullptr;
  std::int64_t* counts = nullptr;
  std::int64_t* row_offsets = nullptr;
  std::int32_t* col_indices = nullptr;
  int* flags = nullptr;
  void* scan_temp = nullptr;
  std::size_t scan_temp_bytes = 0;

  std::int64_t bytes = 0;  // device memory of `owned`

  // An owned device allocation of `bytes` (at least 1).
  template <class T>
  T* alloc(std::size_t n_bytes) {
    void* ptr = nullptr;
    n_bytes = std::max<std::size_t>(1, n_bytes);
    check_cuda(cudaMalloc(&ptr, n_bytes), "cudaMalloc (mask builder)");
    owned.push_back(ptr);
    bytes += static_cast<std::int64_t>(n_bytes);
    return static_cast<T*>(ptr);
  }
  // An owned device copy of `host`.
  template <class T>
  T* copy(const std::vector<T>& host) {
    T* ptr = alloc<T>(host.size() * sizeof(T));
    if (!host.empty()) check_cuda(cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy (prior)");
    return ptr;
  }
  ~State() {
    for (void* p : owned) cuda::DeviceFree{}(p);
  }
};

CudaMaskBuilder::CudaMaskBuilder(const RadialPrior& prior, std::int64_t batch, std::int64_t heads,
                                 std::int64_t head_dim)
    : state_(std::make_unique<State>()) {
  if (batch < 1) throw Error("batch", std::to_string(batch) + ": must be >= 1");
  if (heads < 1) throw Error("heads", std::to_string(heads) + ": must be >= 1");
  if (head_dim < 1 || head_dim > kMaxHeadDim) {
    throw Error("head_dim", std::to_string(head_dim) + ": allowed range [1, " + std::to_string(kMaxHeadDim) + "]");
  }
  if (prior.blocks < 1 || static_cast<std::int64_t>(prior.row_offsets.size()) != prior.blocks + 1) {
    throw Error("prior", "is empty or inconsistent: build it with build_radial_prior()");
  }
  State& s = *state_;
  s.prior = prior;
  s.batch = batch;
  s.heads = heads;
  s.head_dim = head_dim;
  s.rows = batch * heads * prior.blocks;
  for (std::int64_t r = 0; r < prior.blocks; ++r) {
    s.max_row = std::max(s.max_row, prior.row_offsets[r + 1] - prior.row_offsets[r]);
  }
  const std::int64_t total = total_tokens(prior.geometry);
  std::vector<float> tokens(static_cast<std::size_t>(prior.blocks));
  for (std::int64_t c = 0; c < prior.blocks; ++c) {
    tokens[c] = static_cast<float>(std::min<std::int64_t>(prior.geometry.block_size, total - c * prior.geometry.block_size));
  }
  std::vector<std::uint8_t> kinds(prior.kinds.size());
  for (std::size_t i = 0; i < kinds.size(); ++i) kinds[i] = static_cast<std::uint8_t>(prior.kinds[i]);
  s.prior_offsets = s.copy(prior.row_offsets);
  s.prior_cols = s.copy(prior.col_indices);
  s.prior_kinds = s.copy(kinds);
  s.block_tokens = s.copy(tokens);
  const std::size_t pooled = static_cast<std::size_t>(batch * heads * prior.blocks * head_dim);
  s.pooled_q = s.alloc<float>(pooled * sizeof(float));
  s.pooled_k = s.alloc<float>(pooled * sizeof(float));
  const std::size_t entries = static_cast<std::size_t>(batch * heads * prior.size());
  s.keep = s.alloc<std::uint8_t>(entries);
  s.counts = s.alloc<std::int64_t>(static_cast<std::size_t>(s.rows) * sizeof(std::int64_t));
  s.row_offsets = s.alloc<std::int64_t>(static_cast<std::size_t>(s.rows + 1) * sizeof(std::int64_t));
  s.col_indices = s.alloc<std::int32_t>(entries * sizeof(std::int32_t));
  s.flags = s.alloc<int>(sizeof(int));
  check_cuda(cub::DeviceScan::InclusiveSum(nullptr, s.scan_temp_bytes, s.counts, s.row_offsets + 1, static_cast<int>(s.rows)),
             "cub::DeviceScan sizing");
  s.scan_temp = s.alloc<void>(s.scan_temp_bytes);
  check_cuda(cudaMemset(s.row_offsets, 0, sizeof(std::int64_t)), "cudaMemset (row_offsets[0])");
  const std::size_t shared_bytes = select_shared_bytes(s.max_row);
  if (shared_bytes > 48 * 1024) {
    for (const void* kernel : {reinterpret_cast<const void*>(select_kernel<16>), reinterpret_cast<const void*>(select_kernel<32>),
                               reinterpret_cast<const void*>(select_kernel<64>)}) {
      check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)),
                 "cudaFuncSetAttribute (select_kernel)");
    }
  }
}

CudaMaskBuilder::~CudaMaskBuilder() = default;

std::int64_t CudaMaskBuilder::device_bytes() const { return state_->bytes; }

void CudaMaskBuilder::build(const ConstTensor& q, const ConstTensor& k, const SelectionParams& params, void* stream_ptr,
                            const PooledPrefix& pooled) {
  validate(params);
  State& s = *state_;
  validate(pooled, s.prior.blocks, s.prior.geometry.block_size);
  const VideoGeometry& g = s.prior.geometry;
  const Shape expected{s.batch, total_tokens(g), s.heads, s.head_dim};
  for (const auto& [t, name] : {std::pair<const ConstTensor&, const char*>{q, "q"}, {k, "k"}}) {
    if (t.data == nullptr) throw Error(name, "data is null");
    if (t.shape != expected) {
      throw Error(name, "shape " + to_string(t.shape) + " does not match the planned " + to_string(expected) +
                            " [batch, tokens, heads, head_dim]");
    }
  }
  if (k.dtype != q.dtype) throw Error("k", "dtype " + to_string(k.dtype) + " differs from q's " + to_string(q.dtype));
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  check_cuda(cudaMemsetAsync(s.flags, 0, sizeof(int), stream), "cudaMemsetAsync (flags)");
  const auto pool = [&](const ConstTensor& t, const float* prefix, float* out, int flag) {
    if (pooled.blocks > 0) {
      const std::int64_t rows = s.batch * s.heads * pooled.blocks;
      const unsigned threads = static_cast<unsigned>(std::min<std::int64_t>(128, ((s.head_dim + kWarp - 1) / kWarp) * kWarp));
      adopt_pooled_kernel<<<static_cast<unsigned>(rows), threads, 0, stream>>>(prefix, pooled.blocks, s.prior.blocks,
                                                                                s.head_dim, out, s.flags, flag);
      check_cuda(cudaGetLastError(), "adopt_pooled_kernel launch");
    }
    cuda::PoolTarget target;
    target.tokens = expected.tokens;
    target.heads = s.heads;
    target.dim = s.head_dim;
    target.batch = s.batch;
    target.block_size = g.block_size;
    target.first_block = pooled.blocks;
    target.end_block = s.prior.blocks;
    target.out_blocks = s.prior.blocks;
    target.out = out;
    target.flags = s.flags;
    target.flag = flag;
    switch (t.dtype) {
      case DType::f32: cuda::launch_pool(static_cast<const float*>(t.data), target, stream); break;
      case DType::f16: cuda::launch_pool(static_cast<const __half*>(t.data), target, stream); break;
      case DType::bf16: cuda::launch_pool(static_cast<const __nv_bfloat16*>(t.data), target, stream); break;
    }
  };
  pool(q, pooled.q, s.pooled_q, kNonFiniteQ);
  pool(k, pooled.k, s.pooled_k, kNonFiniteK);

  SelectParams p{};
  p.prior_offsets = s.prior_offsets;
  p.prior_cols = s.prior_cols;
  p.prior_kinds = s.prior_kinds;
  p.block_tokens = s.block_tokens;
  p.pooled_q = s.pooled_q;
  p.pooled_k = s.pooled_k;
  p.blocks = s.prior.blocks;
  p.dim = s.head_dim;
  p.prior_size = s.prior.size();
  p.scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));  // as select_blocks()
  p.dynamic = params.mode == SelectionMode::dynamic_threshold ? 1 : 0;
  p.r_near = params.r_near;
  p.r_far = params.r_far;
  p.tau_near = params.tau_near;
  p.tau_far = params.tau_far;
  p.keep = s.keep;
  p.counts = s.counts;
  const unsigned grid = static_cast<unsigned>(s.rows);
  const std::size_t shared = select_shared_bytes(s.max_row);
  // Query elements a lane holds: head_dim up to 128 (the models'), 256, or kMaxHeadDim = 512.
  static_assert(64 * kScoreLanes == kMaxHeadDim, "select_kernel<64> covers every allowed head_dim");
  if (s.head_dim <= 16 * kScoreLanes) {
    select_kernel<16><<<grid, kSelectThreads, shared, stream>>>(p, s.max_row);
  } else if (s.head_dim <= 32 * kScoreLanes) {
    select_kernel<32><<<grid, kSelectThreads, shared, stream>>>(p, s.max_row);
  } else {
    select_kernel<64><<<grid, kSelectThreads, shared, stream>>>(p, s.max_row);
  }
  check_cuda(cudaGetLastError(), "select_kernel launch");
  check_cuda(cub::DeviceScan::InclusiveSum(s.scan_temp, s.scan_temp_bytes, s.counts, s.row_offsets + 1,
                                           static_cast<int>(s.rows), stream),
             "cub::DeviceScan");
  constexpr int kRowsPerCta = 4;
  compact_kernel<<<static_cast<unsigned>((s.rows + kRowsPerCta - 1) / kRowsPerCta), kRowsPerCta * kWarp, 0, stream>>>(
      s.prior_offsets, s.prior_cols, s.keep, s.prior.blocks, s.prior.size(), s.row_offsets, s.col_indices, s.rows);
  check_cuda(cudaGetLastError(), "compact_kernel launch");
}

DeviceLayoutView CudaMaskBuilder::device_layout() const {
  const State& s = *state_;
  DeviceLayoutView v;
  v.batch = s.batch;
  v.heads = s.heads;
  v.tokens = total_tokens(s.prior.geometry);
  v.block_size = s.prior.geometry.block_size;
  v.blocks = s.prior.blocks;
  v.row_offsets = s.row_offsets;
  v.col_indices = s.col_indices;
  return v;
}

namespace {

// Waits for the last build and turns its NaN / Inf flags into errors.
void finish_build(const int* device_flags, cudaStream_t stream) {
  check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize (mask builder)");
  MaskBuildStatus status;
  check_cuda(cudaMemcpy(&status.non_finite, device_flags, sizeof(int), cudaMemcpyDeviceToHost), "cudaMemcpy (flags)");
  check_status(status);
}

}  // namespace

void check_status(const MaskBuildStatus& status) {
  if (status.non_finite & kNonFiniteQ) {
    throw Error("q", "holds NaN or Inf (found by the GPU mask builder): inputs must be finite");
  }
  if (status.non_finite & kNonFiniteK) {
    throw Error("k", "holds NaN or Inf (found by the GPU mask builder): inputs must be finite");
  }
}

void CudaMaskBuilder::copy_status_async(MaskBuildStatus* status, void* stream_ptr) const {
  const State& s = *state_;
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  check_cuda(cudaMemcpyAsync(&status->kept, s.row_offsets + s.rows, sizeof(std::int64_t), cudaMemcpyDeviceToHost, stream),
             "cudaMemcpyAsync (kept)");
  check_cuda(cudaMemcpyAsync(&status->non_finite, s.flags, sizeof(int), cudaMemcpyDeviceToHost, stream),
             "cudaMemcpyAsync (flags)");
}

std::int64_t CudaMaskBuilder::kept_blocks(void* stream_ptr) const {
  const State& s = *state_;
  finish_build(s.flags, static_cast<cudaStream_t>(stream_ptr));
  std::int64_t kept = 0;
  check_cuda(cudaMemcpy(&kept, s.row_offsets + s.rows, sizeof kept, cudaMemcpyDeviceToHost), "cudaMemcpy (kept)");
  return kept;
}

BlockLayout CudaMaskBuilder::download(void* stream_ptr) const {
  finish_build(state_->flags, static_cast<cudaStream_t>(stream_ptr));
  return to_host(device_layout());
}

BlockLayout to_host(const DeviceLayoutView& v) {
  BlockLayout l;
  l.batch = v.batch;
  l.heads = v.heads;
  l.tokens = v.tokens;
  l.block_size = v.block_size;
  l.blocks = v.blocks;
  l.row_offsets.resize(static_cast<std::size_t>(l.rows() + 1));
  check_cuda(cudaMemcpy(l.row_offsets.data(), v.row_offsets, l.row_offsets.size() * sizeof(std::int64_t), cudaMemcpyDeviceToHost),
             "cudaMemcpy (row_offsets)");
  l.col_indices.resize(static_cast<std::size_t>(l.row_offsets.back()));
  check_cuda(cudaMemcpy(l.col_indices.data(), v.col_indices, l.col_indices.size() * sizeof(std::int32_t), cudaMemcpyDeviceToHost),
             "cudaMemcpy (col_indices)");
  return l;
}

}  // namespace dynamicrad
