// Attention: the dense reference (the oracle) and block-sparse backends behind one plan/run
// interface.
//
// Tensors (see tensor.h):
//   q, k, v: [batch, tokens, heads, head_dim], f32 / f16 / bf16, all the same dtype
//   out:     [batch, tokens, heads, head_dim], f32 / f16 / bf16
//   lse:     [batch, heads, tokens] float, natural-log log-sum-exp of each query row's scaled scores;
//            optional (nullptr); -inf for a row whose layout keeps no block (its output row is 0).
#pragma once

#include <memory>
#include <string>

#include "dynamicrad/layout.h"
#include "dynamicrad/tensor.h"

namespace dynamicrad {

struct AttentionOptions {
  double scale = 0.0;  // softmax scale; 0 means 1 / sqrt(head_dim)
  int threads = 0;     // CPU worker threads; 0 means all hardware threads
};

struct AttentionArgs {
  ConstTensor q;
  ConstTensor k;
  ConstTensor v;
  MutableTensor out;
  float* lse = nullptr;    // [batch, heads, tokens] or nullptr
  void* stream = nullptr;  // CUDA backend: the cudaStream_t to run on (nullptr: the default stream)
};

// Exact attention with double accumulation, for tests and error measurement. With a layout, only
// the layout's blocks take part (dense attention with a block mask); without one, dense attention.
void attention_reference(const AttentionArgs& args, const AttentionOptions& options,
                         const BlockLayout* layout = nullptr);

enum class Device { cpu, cuda };

// A planned block-sparse attention: planning checks and keeps the layout and sizes the workspace;
// run() computes. run() throws Error when a tensor disagrees with the planned layout.
class AttentionBackend {
 public:
  virtual ~AttentionBackend() = default;
  virtual std::string name() const = 0;
  virtual const BlockLayout& layout() const = 0;
  virtual void run(const AttentionArgs& args) const = 0;
};

// CPU backend: multi-threaded, online softmax in fp32 over the layout's blocks. Worker scratch is
// allocated by the first run() and reused; concurrent run() calls on one plan are serialised.
// Scores are formed in fp32, as in the CUDA kernels and torch's SDPA: a scaled score beyond float's
// range (about 3.4e38, e.g. q and k entries near 1e19 at head_dim 128) turns its row into NaN,
// where attention_reference() stays finite.
std::unique_ptr<AttentionBackend> plan_cpu_attention(BlockLayout layout,
                                                     const AttentionOptions& options);

// Checks q, k, v, out against each other and the layout; throws Error naming the bad tensor. out and
// lse may not share memory with k, v or each other; out may be q itself.
void check_attention_args(const AttentionArgs& args, const BlockLayout* layout);

}  // namespace dynamicrad
