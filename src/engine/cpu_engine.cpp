// The CPU engine: selection with pool_blocks + select_blocks, attention with the CPU block-sparse
// backend. Each select() plans attention once for its layout (host memory); attend() only runs that
// plan, so a layout reused for several calls is neither copied nor planned again.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/check.h"
#include "dynamicrad/layout.h"
#include "engine/engine_backend.h"

namespace dynamicrad::detail {

namespace {

class CpuEngine final : public SparseAttentionEngine::Backend {
 public:
  CpuEngine(const RadialPrior& prior, const EngineOptions& options)
      : prior_(prior), options_(options), counts_(static_cast<std::size_t>(options.slots)),
        plans_(static_cast<std::size_t>(options.keep_layouts ? options.slots : 1)) {}

  void select(const ConstTensor& q, const ConstTensor& k, const SelectionParams& params, int slot, void*,
              const PooledPrefix& prefix) override {
    VideoGeometry g = prior_.geometry;
    g.batch = q.shape.batch;
    const PooledBlocks pooled = pool_blocks(q, k, g, prefix);
    BlockLayout layout = select_blocks(prior_, pooled, params);
    counts_[slot] = KeptBlocks{layout.row_offsets.back(), layout.batch * layout.heads * layout.blocks * layout.blocks};
    AttentionOptions o;
    o.scale = options_.scale;
    o.threads = options_.threads;
    plans_[index(slot)] = plan_cpu_attention(std::move(layout), o);
    current_ = slot;
  }

  void attend(const AttentionArgs& args, int slot) const override {
    const AttentionBackend& plan = stored(slot);
    const std::int64_t batch = plan.layout().batch;
    require(args.q.shape.batch == batch, "q",
            "batch " + std::to_string(args.q.shape.batch) + " differs from the batch " + std::to_string(batch) +
                " slot " + std::to_string(slot) + "'s layout was selected for");
    plan.run(args);
  }

  void attend_dense(const AttentionArgs& args) const override {
    const std::int64_t batch = args.q.shape.batch;
    std::unique_ptr<AttentionBackend>& plan = dense_[batch];
    if (!plan) {
      const VideoGeometry& g = prior_.geometry;
      AttentionOptions o;
      o.scale = options_.scale;
      o.threads = options_.threads;
      plan = plan_cpu_attention(full_layout(batch, g.heads, total_tokens(g), g.block_size), o);
    }
    plan->run(args);
  }

  KeptBlocks kept(int slot, void*) const override {
    require(counts_[slot].total > 0, "slot", std::to_string(slot) + ": no layout was selected for it yet");
    return counts_[slot];
  }

  BlockLayout layout(int slot, void*) const override { return stored(slot).layout(); }

  std::int64_t device_bytes() const override { return 0; }

 private:
  std::size_t index(int slot) const { return options_.keep_layouts ? static_cast<std::size_t>(slot) : 0; }

  const AttentionBackend& stored(int slot) const {
    if (!options_.keep_layouts && current_ != slot) throw_replaced_slot(slot, current_);
    const std::unique_ptr<AttentionBackend>& plan = plans_[index(slot)];
    require(plan != nullptr, "slot", std::to_string(slot) + ": no layout was selected for it yet");
    return *plan;
  }

  const RadialPrior& prior_;
  EngineOptions options_;
  std::vector<KeptBlocks> counts_;
  std::vector<std::unique_ptr<AttentionBackend>> plans_;
  int current_ = -1;
  // The full layout's plan per batch (attend_dense).
  mutable std::map<std::int64_t, std::unique_ptr<AttentionBackend>> dense_;
};

}  // namespace

std::unique_ptr<SparseAttentionEngine::Backend> make_cpu_engine(const RadialPrior& prior,
                                                                const EngineOptions& options) {
  return std::make_unique<CpuEngine>(prior, options);
}

}  // namespace dynamicrad::detail
