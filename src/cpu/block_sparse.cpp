// CPU block-sparse attention: one task per (batch, head, query block) row of the layout, online
// softmax in fp32 over the row's key blocks (FlashAttention's recurrence), Eigen for the tile
// products and the vectorised exp.
#include <cmath>
#include <limits>
#include <mutex>
#include <vector>

#include <Eigen/Core>

#include "core/check.h"
#include "core/parallel.h"
#include "cpu/store.h"
#include "dynamicrad/attention.h"

namespace dynamicrad {

namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using StridedTile = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;

// Per-worker scratch: tiles of at most block_size rows.
struct Workspace {
  RowMatrix q, k, v, scores, out;
  Eigen::VectorXf row_max, row_sum, rescale, new_max;

  Workspace(std::int64_t block, std::int64_t dim)
      : q(block, dim), k(block, dim), v(block, dim), scores(block, block), out(block, dim),
        row_max(block), row_sum(block), rescale(block), new_max(block) {}
};

// The tile of `rows` tokens starting at `token` for (b, h) as float: a strided view of f32 input,
// or a converted copy in `scratch` for f16 / bf16.
StridedTile load_tile(const ConstTensor& t, std::int64_t b, std::int64_t h, std::int64_t token,
                      std::int64_t rows, RowMatrix& scratch) {
  const Shape& s = t.shape;
  const std::int64_t row_stride = s.heads * s.head_dim;
  const std::int64_t first = ((b * s.tokens + token) * s.heads + h) * s.head_dim;
  if (t.dtype == DType::f32) {
    return StridedTile(static_cast<const float*>(t.data) + first, rows, s.head_dim, Eigen::OuterStride<>(row_stride));
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t d = 0; d < s.head_dim; ++d) scratch(r, d) = load_as_float(t.data, t.dtype, first + r * row_stride + d);
  }
  return StridedTile(scratch.data(), rows, s.head_dim, Eigen::OuterStride<>(scratch.cols()));
}

class CpuBlockSparseAttention final : public AttentionBackend {
 public:
  CpuBlockSparseAttention(BlockLayout layout, const AttentionOptions& options)
      : layout_(std::move(layout)), options_(options) {
    validate(layout_);
    detail::require(std::isfinite(options.scale), "options.scale", "must be finite");
    detail::require(options.threads >= 0, "options.threads", std::to_string(options.threads) + ": must be >= 0");
  }

  std::string name() const override { return "cpu-block-sparse"; }
  const BlockLayout& layout() const override { return layout_; }

  // The worker scratch is sized on the first run (head_dim is not known at planning) and reused
  // after that; runs of one plan are serialised by a mutex.
  void run(const AttentionArgs& args) const override {
    check_attention_args(args, &layout_);
    const Shape& s = args.q.shape;
    const float scale = static_cast<float>(options_.scale != 0.0 ? options_.scale
                                                                 : 1.0 / std::sqrt(static_cast<double>(s.head_dim)));
    const int threads = static_cast<int>(std::min<std::int64_t>(detail::resolve_threads(options_.threads), layout_.rows()));
    std::lock_guard<std::mutex> lock(mutex_);
    if (static_cast<int>(workspaces_.size()) != threads || workspace_dim_ != s.head_dim) {
      workspaces_.clear();
      workspaces_.reserve(static_cast<std::size_t>(threads));
      for (int w = 0; w < threads; ++w) workspaces_.emplace_back(layout_.block_size, s.head_dim);
      workspace_dim_ = s.head_dim;
    }
    detail::parallel_for(layout_.rows(), threads, [&](std::int64_t row, int worker) {
      run_row(args, scale, row, workspaces_[static_cast<std::size_t>(worker)]);
    });
  }

 private:
  void run_row(const AttentionArgs& a, float scale, std::int64_t row, Workspace& ws) const {
    const Shape& s = a.q.shape;
    const std::int64_t block = layout_.block_size;
    const std::int64_t q_block = row % layout_.blocks;
    const std::int64_t h = (row / layout_.blocks) % layout_.heads;
    const std::int64_t b = row / (layout_.blocks * layout_.heads);
    const std::int64_t q0 = q_block * block;
    const std::int64_t rows = std::min(block, s.tokens - q0);

    auto q = ws.q.topRows(rows);
    q = load_tile(a.q, b, h, q0, rows, ws.q) * scale;  // converts in place for f16 / bf16
    auto out = ws.out.topRows(rows);
    out.setZero();
    auto row_max = ws.row_max.head(rows);
    auto row_sum = ws.row_sum.head(rows);
    row_max.setConstant(-std::numeric_limits<float>::infinity());
    row_sum.setZero();

    for (std::int64_t e = layout_.row_offsets[row]; e < layout_.row_offsets[row + 1]; ++e) {
      const std::int64_t k0 = static_cast<std::int64_t>(layout_.col_indices[e]) * block;
      const std::int64_t cols = std::min(block, s.tokens - k0);
      const StridedTile k = load_tile(a.k, b, h, k0, cols, ws.k);
      auto scores = ws.scores.topLeftCorner(rows, cols);
      scores.noalias() = q * k.transpose();
      // Online softmax: rescale what was accumulated under the old row maximum.
      auto new_max = ws.new_max.head(rows);
      new_max = row_max.cwiseMax(scores.rowwise().maxCoeff());
      auto rescale = ws.rescale.head(rows);
      rescale = (row_max - new_max).array().exp().matrix();
      row_max = new_max;
      scores = (scores.array().colwise() - new_max.array()).exp().matrix();
      row_sum = row_sum.cwiseProduct(rescale) + scores.rowwise().sum();
      const StridedTile v = load_tile(a.v, b, h, k0, cols, ws.v);
      out.array().colwise() *= rescale.array();
      out.noalias() += scores * v;
    }
    store(a, b, h, q0, rows, out, row_max, row_sum);
  }

  template <class Out, class Vec>
  void store(const AttentionArgs& a, std::int64_t b, std::int64_t h, std::int64_t q0, std::int64_t rows,
             const Out& out, const Vec& row_max, const Vec& row_sum) const {
    const Shape& s = a.q.shape;
    for (std::int64_t r = 0; r < rows; ++r) {
      const bool empty = row_sum(r) == 0.0f;  // no key block in this row
      const float inv = empty ? 0.0f : 1.0f / row_sum(r);
      const std::int64_t base = ((b * s.tokens + q0 + r) * s.heads + h) * s.head_dim;
      for (std::int64_t d = 0; d < s.head_dim; ++d) detail::store_float(a.out, base + d, out(r, d) * inv);
      if (a.lse != nullptr) {
        a.lse[(b * s.heads + h) * s.tokens + q0 + r] =
            empty ? -std::numeric_limits<float>::infinity() : row_max(r) + std::log(row_sum(r));
      }
    }
  }

  BlockLayout layout_;
  AttentionOptions options_;
  mutable std::mutex mutex_;
  mutable std::vector<Workspace> workspaces_;
  mutable std::int64_t workspace_dim_ = 0;
};

}  // namespace

std::unique_ptr<AttentionBackend> plan_cpu_attention(BlockLayout layout, const AttentionOptions& options) {
  return std::make_unique<CpuBlockSparseAttention>(std::move(layout), options);
}

}  // namespace dynamicrad
