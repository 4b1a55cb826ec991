// SparseAttentionEngine: validation shared by every device, then the device backend.
#include "dynamicrad/engine.h"

#include <string>

#include "core/check.h"
#include "engine/engine_backend.h"

namespace dynamicrad {

namespace {

using detail::require;

constexpr int kMaxSlots = 65536;
constexpr int kMaxThreads = 1024;  // as the CLI's --threads

void check_slot(int slot, const EngineOptions& o) {
  require(slot >= 0 && slot < o.slots, "slot",
          std::to_string(slot) + ": allowed range [0, " + std::to_string(o.slots - 1) + "] (options.slots = " +
              std::to_string(o.slots) + ")");
}

// The call's shape: any batch >= 1, the geometry's tokens, heads and head_dim.
void check_call_tensor(const ConstTensor& t, const std::string& name, const EngineOptions& o) {
  const VideoGeometry& g = o.geometry;
  require(t.data != nullptr, name, "data is null");
  require(t.shape.batch >= 1, name, "batch " + std::to_string(t.shape.batch) + ": must be >= 1");
  require_batch_fits(g, t.shape.batch, name + ".batch");
  const std::int64_t tokens = total_tokens(g);
  require(t.shape.tokens == tokens, name,
          "has " + std::to_string(t.shape.tokens) + " tokens, the geometry (" + std::to_string(g.frames) + " x " +
              std::to_string(g.height) + " x " + std::to_string(g.width) + " video + " +
              std::to_string(g.text_tokens) + " text) has " + std::to_string(tokens));
  require(t.shape.heads == g.heads, name,
          "has " + std::to_string(t.shape.heads) + " heads, the engine was made for " + std::to_string(g.heads));
  require(t.shape.head_dim == g.head_dim, name,
          "head_dim " + std::to_string(t.shape.head_dim) + ", the engine was made for " + std::to_string(g.head_dim));
}

}  // namespace

namespace detail {

void throw_replaced_slot(int slot, int current) {
  throw Error("slot", std::to_string(slot) + ": its layout was replaced by " +
                          (current < 0 ? std::string("a select() that failed")
                                       : "slot " + std::to_string(current) + "'s") +
                          "; select() it again, or make the engine with keep_layouts to keep one layout a slot");
}

}  // namespace detail

SparseAttentionEngine::SparseAttentionEngine(const EngineOptions& options) : options_(options) {
  options_.geometry.batch = 1;  // the calls bring their own batch
  validate(options_.geometry);
  validate(options_.prior);
  require(options_.slots >= 1 && options_.slots <= kMaxSlots, "options.slots",
          std::to_string(options_.slots) + ": allowed range [1, " + std::to_string(kMaxSlots) + "]");
  require(options_.threads >= 0 && options_.threads <= kMaxThreads, "options.threads",
          std::to_string(options_.threads) + ": allowed range [0, " + std::to_string(kMaxThreads) +
              "] (0: every hardware thread)");
  require(options_.scale >= 0.0 && options_.scale < 1e30, "options.scale",
          "must be >= 0 and finite (0 means 1 / sqrt(head_dim))");
  prior_ = build_radial_prior(options_.geometry, options_.prior, options_.threads);
  backend_ = options_.device == Device::cuda ? detail::make_cuda_engine(prior_, options_)
                                             : detail::make_cpu_engine(prior_, options_);
}

SparseAttentionEngine::~SparseAttentionEngine() = default;

const EngineOptions& SparseAttentionEngine::options() const { return options_; }
const RadialPrior& SparseAttentionEngine::prior() const { return prior_; }
std::int64_t SparseAttentionEngine::tokens() const { return total_tokens(options_.geometry); }

void SparseAttentionEngine::select(const ConstTensor& q, const ConstTensor& k, const SelectionParams& params, int slot,
                                   void* stream, const PooledPrefix& pooled) {
  check_slot(slot, options_);
  validate(params);
  check_call_tensor(q, "q", options_);
  check_call_tensor(k, "k", options_);
  require(k.shape == q.shape, "k", "shape " + to_string(k.shape) + " differs from q's " + to_string(q.shape));
  require(k.dtype == q.dtype, "k", "dtype " + to_string(k.dtype) + " differs from q's " + to_string(q.dtype));
  validate(pooled, num_blocks(options_.geometry), options_.geometry.block_size);
  backend_->select(q, k, params, slot, stream, pooled);
}

void SparseAttentionEngine::attend(const AttentionArgs& args, int slot) const {
  check_slot(slot, options_);
  check_call_tensor(args.q, "q", options_);
  check_call_tensor(args.k, "k", options_);
  check_call_tensor(args.v, "v", options_);
  check_call_tensor(args.out, "out", options_);
  backend_->attend(args, slot);
}

void SparseAttentionEngine::attend_dense(const AttentionArgs& args) const {
  check_call_tensor(args.q, "q", options_);
  check_call_tensor(args.k, "k", options_);
  check_call_tensor(args.v, "v", options_);
  check_call_tensor(args.out, "out", options_);
  backend_->attend_dense(args);
}

KeptBlocks SparseAttentionEngine::kept(int slot, void* stream) const {
  check_slot(slot, options_);
  return backend_->kept(slot, stream);
}

BlockLayout SparseAttentionEngine::layout(int slot, void* stream) const {
  check_slot(slot, options_);
  return backend_->layout(slot, stream);
}

std::int64_t SparseAttentionEngine::device_bytes() const { return backend_->device_bytes(); }

}  // namespace dynamicrad
