// The sparse attention engine that integrations (the Python/torch layer, the diffusers processors)
// drive once per attention call: one geometry and radial prior (built once), one device, and a
// block layout selected from each call's Q and K (PAPER.md parts 1-2) before block-sparse attention.
//
//   SparseAttentionEngine engine(options);            // builds the prior; allocates nothing per call
//   engine.select(q, k, selection, slot, stream);     // layout of `slot` from this call's Q and K
//   engine.attend(args, slot);                        // attention over that layout
//   engine.kept(slot, stream);                        // block pairs the layout keeps (for reports)
//
// Slots. A slot names a layout (an integration uses one slot per transformer layer). select() always
// records the slot's kept-block count, so that per-layer sparsity can be reported without a device
// synchronisation per layer. With keep_layouts off, the layout itself lives in one shared buffer:
// attend(slot) uses the most recent select() and throws when that was another slot. With
// keep_layouts on, every slot keeps its own copy (on the device, sized to what it keeps), so a
// layout can be reused for a few steps (a refresh interval).
//
// Tensors are [batch, tokens, heads, head_dim] in the geometry's sequence order (see geometry.h),
// contiguous; `tokens` must equal total_tokens(geometry), heads and head_dim the geometry's. The
// batch may change between calls (classifier-free guidance in one or two calls); the CUDA engine
// keeps one mask builder and one attention plan per batch size it has seen.
//   cpu:  q, k, v, out in f32 / f16 / bf16 (host memory)
//   cuda: q, k, v, out in f16 / bf16 (device memory, 16-byte aligned; Q and K may also be f32 for
//         select()), head_dim 64 or 128, block 128 (Hopper kernel) or 64
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "dynamicrad/attention.h"
#include "dynamicrad/geometry.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"

namespace dynamicrad {

struct EngineOptions {
  VideoGeometry geometry;       // heads and head_dim are the calls'; batch is ignored
  RadialPriorParams prior;
  Device device = Device::cpu;
  int cuda_device = -1;         // CUDA device ordinal; -1 means the current device
  int slots = 1;                // layout slots, [1, 65536]
  bool keep_layouts = false;    // every slot keeps its own layout (see above)
  double scale = 0.0;           // softmax scale; 0 means 1 / sqrt(head_dim)
  int threads = 0;              // CPU: prior construction and attention threads (0: all)
};

// Kept block pairs of a layout and the dense count batch * heads * blocks^2.
struct KeptBlocks {
  std::int64_t kept = 0;
  std::int64_t total = 0;
  double density() const { return total > 0 ? static_cast<double>(kept) / static_cast<double>(total) : 0.0; }
  double sparsity() const { return 1.0 - density(); }
};

// One engine serves one thread at a time: its calls (const ones too) make plans and fill buffers
// on first use without locks.
class SparseAttentionEngine {
 public:
  // Validates the options (Error names the field) and builds the radial prior.
  explicit SparseAttentionEngine(const EngineOptions& options);
  ~SparseAttentionEngine();
  SparseAttentionEngine(const SparseAttentionEngine&) = delete;
  SparseAttentionEngine& operator=(const SparseAttentionEngine&) = delete;

  const EngineOptions& options() const;
  const RadialPrior& prior() const;
  std::int64_t tokens() const;  // total_tokens(geometry)

  // Selects the layout of `slot` from q and k. stream: the cudaStream_t (cuda) or nullptr.
  // `pooled`: the block means of the first pooled.blocks blocks, already computed on the engine's
  // device (see PooledPrefix); selection pools only the other blocks. The layout is the one q and
  // k alone give when the means are pooling's. Tokens inside those blocks are not read for scores:
  // a NaN or Inf there shows up as a non-finite mean (Error "pooled_q" / "pooled_k" on the CPU,
  // "q" / "k" from kept() on the CUDA engine).
  void select(const ConstTensor& q, const ConstTensor& k, const SelectionParams& params, int slot,
              void* stream = nullptr, const PooledPrefix& pooled = {});

  // Block-sparse attention with the layout of `slot` (see attention.h for args; args.stream is used
  // on the CUDA engine). The batch must be the one the slot's layout was selected for.
  void attend(const AttentionArgs& args, int slot) const;

  // Dense attention (every block pair) on the engine's kernels, for dense layers and warm-up steps:
  // no layout, any batch; args as attend(). The CUDA engine plans it once per batch and dtype
  // (shared with attend()); the CPU engine keeps a full layout per batch.
  void attend_dense(const AttentionArgs& args) const;

  // The kept blocks of the slot's last layout; Error when the slot was never selected. On the CUDA
  // engine this synchronises the device (the count was copied to pinned memory by select()) and
  // throws Error("q" / "k") when that select() met NaN or Inf: the CUDA engine finds non-finite
  // inputs asynchronously, so select() and attend() do not report them (the CPU engine's select()
  // throws at once). A CUDA select() that throws leaves its slot without a layout; a CPU one leaves
  // the slot as it was.
  KeptBlocks kept(int slot, void* stream = nullptr) const;

  // A host copy of the slot's layout (for pictures and tests), subject to the same rules as attend().
  BlockLayout layout(int slot, void* stream = nullptr) const;

  // Device memory the engine holds, in bytes (0 on the CPU engine).
  std::int64_t device_bytes() const;

  // The backend of an engine: select / attend / kept / layout on one device (engine.cpp validates
  // everything first, so implementations only check what depends on the device).
  class Backend;

 private:
  EngineOptions options_;
  RadialPrior prior_;
  std::unique_ptr<Backend> backend_;
};

}  // namespace dynamicrad
