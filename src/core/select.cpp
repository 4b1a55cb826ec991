// Dual-mode selection inside the radial prior (static-ratio, dynamic-threshold).
#include "dynamicrad/select.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/number_text.h"

namespace dynamicrad {

void validate(const SelectionParams& p) {
  const auto in_unit = [](double v) { return v >= 0.0 && v <= 1.0; };
  if (!in_unit(p.r_near)) throw Error("selection.r_near", detail::shortest_text(p.r_near) + ": allowed range [0, 1]");
  if (!in_unit(p.r_far)) throw Error("selection.r_far", detail::shortest_text(p.r_far) + ": allowed range [0, 1]");
  if (!in_unit(p.tau_near)) {
    throw Error("selection.tau_near", detail::shortest_text(p.tau_near) + ": allowed range [0, 1]");
  }
  if (!in_unit(p.tau_far)) {
    throw Error("selection.tau_far", detail::shortest_text(p.tau_far) + ": allowed range [0, 1]");
  }
}

std::string to_string(SelectionMode mode) {
  return mode == SelectionMode::static_ratio ? "static-ratio" : "dynamic-threshold";
}

SelectionMode parse_selection_mode(const std::string& text, const std::string& field) {
  if (text == "static-ratio") return SelectionMode::static_ratio;
  if (text == "dynamic-threshold") return SelectionMode::dynamic_threshold;
  throw Error(field, "\"" + text + "\" is not a selection mode: allowed values are static-ratio, dynamic-threshold");
}

namespace {

struct Scored {
  double score;
  std::int32_t col;
  std::int64_t slot;  // index into the prior row
};

// Keeps the top ceil(share * n) of `group` (highest score first, ties to the lower column).
void keep_top(std::vector<Scored>& group, double share, std::vector<char>& keep) {
  const auto n = static_cast<double>(group.size());
  const auto count = static_cast<std::size_t>(std::min(n, std::ceil(share * n)));
  if (count == 0) return;
  const auto better = [](const Scored& a, const Scored& b) {
    return a.score > b.score || (a.score == b.score && a.col < b.col);
  };
  if (count < group.size()) std::nth_element(group.begin(), group.begin() + (count - 1), group.end(), better);
  // After nth_element the first `count` entries are the best ones (in some order).
  for (std::size_t i = 0; i < count; ++i) keep[group[i].slot] = 1;
}

class Selector {
 public:
  Selector(const RadialPrior& prior, const PooledBlocks& pooled, const SelectionParams& params)
      : prior_(prior), pooled_(pooled), params_(params),
        scale_(1.0 / std::sqrt(static_cast<double>(pooled.head_dim))) {
    const VideoGeometry& g = prior.geometry;
    const std::int64_t total = total_tokens(g);
    block_tokens_.resize(static_cast<std::size_t>(prior.blocks));
    for (std::int64_t c = 0; c < prior.blocks; ++c) {
      block_tokens_[c] = static_cast<float>(std::min<std::int64_t>(g.block_size, total - c * g.block_size));
    }
  }

  BlockLayout run() {
    const VideoGeometry& g = prior_.geometry;
    BlockLayout layout;
    layout.batch = pooled_.batch;
    layout.heads = pooled_.heads;
    layout.tokens = total_tokens(g);
    layout.block_size = g.block_size;
    layout.blocks = prior_.blocks;
    layout.row_offsets.reserve(static_cast<std::size_t>(layout.rows() + 1));
    layout.row_offsets.push_back(0);
    for (std::int64_t bh = 0; bh < pooled_.batch * pooled_.heads; ++bh) {
      for (std::int64_t r = 0; r < prior_.blocks; ++r) {
        select_row(bh, r, layout.col_indices);
        layout.row_offsets.push_back(static_cast<std::int64_t>(layout.col_indices.size()));
      }
    }
    return layout;
  }

 private:
  double score(std::int64_t bh, std::int64_t r, std::int64_t c) const {
    const std::int64_t d = pooled_.head_dim;
    return block_score(pooled_.q.data() + (bh * prior_.blocks + r) * d,
                       pooled_.k.data() + (bh * prior_.blocks + c) * d, d, scale_);
  }

  void select_row(std::int64_t bh, std::int64_t r, std::vector<std::int32_t>& out) {
    const std::int64_t begin = prior_.row_offsets[r];
    const std::int64_t end = prior_.row_offsets[r + 1];
    keep_.assign(static_cast<std::size_t>(end - begin), 0);
    if (params_.mode == SelectionMode::static_ratio) {
      select_static(bh, r, begin, end);
    } else {
      select_dynamic(bh, r, begin, end);
    }
    for (std::int64_t i = begin; i < end; ++i) {
      if (keep_[i - begin]) out.push_back(prior_.col_indices[i]);
    }
  }

  void select_static(std::int64_t bh, std::int64_t r, std::int64_t begin, std::int64_t end) {
    near_.clear();
    far_.clear();
    for (std::int64_t i = begin; i < end; ++i) {
      const BlockKind kind = prior_.kinds[i];
      if (kind == BlockKind::forced) {
        keep_[i - begin] = 1;
        continue;
      }
      const std::int32_t c = prior_.col_indices[i];
      (kind == BlockKind::near ? near_ : far_).push_back(Scored{score(bh, r, c), c, i - begin});
    }
    keep_top(near_, params_.r_near, keep_);
    keep_top(far_, params_.r_far, keep_);
  }

  void select_dynamic(std::int64_t bh, std::int64_t r, std::int64_t begin, std::int64_t end) {
    scores_.resize(static_cast<std::size_t>(end - begin));
    double max_score = -INFINITY;
    for (std::int64_t i = begin; i < end; ++i) {
      scores_[i - begin] = score(bh, r, prior_.col_indices[i]);
      max_score = std::max(max_score, scores_[i - begin]);
    }
    // p(C) = |C| exp(z - max) / sum |C'| exp(z' - max), accumulated in double.
    double denominator = 0.0;
    for (std::int64_t i = begin; i < end; ++i) {
      denominator += block_tokens_[prior_.col_indices[i]] *
                     std::exp(scores_[i - begin] - max_score);
    }
    for (std::int64_t i = begin; i < end; ++i) {
      const BlockKind kind = prior_.kinds[i];
      if (kind == BlockKind::forced) {
        keep_[i - begin] = 1;
        continue;
      }
      const double mass = block_tokens_[prior_.col_indices[i]] *
                          std::exp(scores_[i - begin] - max_score) / denominator;
      const double tau = kind == BlockKind::near ? params_.tau_near : params_.tau_far;
      keep_[i - begin] = mass >= tau ? 1 : 0;
    }
  }

  const RadialPrior& prior_;
  const PooledBlocks& pooled_;
  const SelectionParams& params_;
  const double scale_;
  std::vector<float> block_tokens_;
  // Per-row scratch, reused across rows.
  std::vector<char> keep_;
  std::vector<Scored> near_, far_;
  std::vector<double> scores_;
};

}  // namespace

double block_score(const float* q_mean, const float* k_mean, std::int64_t head_dim, double scale) {
  // Eight independent double lanes (lane j takes elements j, j + 8, ...), combined pairwise: the
  // order is fixed so that every backend reproduces the same bits. Float products are exact in double.
  constexpr int kLanes = 8;
  double lanes[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= head_dim; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lanes[j] += static_cast<double>(q_mean[i + j]) * static_cast<double>(k_mean[i + j]);
  }
  for (int j = 0; i + j < head_dim; ++j) lanes[j] += static_cast<double>(q_mean[i + j]) * static_cast<double>(k_mean[i + j]);
  const double dot = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  return dot * scale;
}

BlockLayout select_blocks(const RadialPrior& prior, const PooledBlocks& pooled,
                          const SelectionParams& params) {
  validate(params);
  const VideoGeometry& g = prior.geometry;
  detail::require(pooled.blocks == prior.blocks, "pooled.blocks",
                  std::to_string(pooled.blocks) + " does not match the prior's " + std::to_string(prior.blocks));
  detail::require(pooled.head_dim >= 1, "pooled.head_dim", std::to_string(pooled.head_dim) + ": must be >= 1");
  detail::require(pooled.batch >= 1 && pooled.heads >= 1, "pooled",
                  "batch and heads must be >= 1");
  const auto expected = static_cast<std::size_t>(pooled.batch * pooled.heads * pooled.blocks * pooled.head_dim);
  detail::require(pooled.q.size() == expected, "pooled.q",
                  "holds " + std::to_string(pooled.q.size()) + " values, expected " + std::to_string(expected));
  detail::require(pooled.k.size() == expected, "pooled.k",
                  "holds " + std::to_string(pooled.k.size()) + " values, expected " + std::to_string(expected));
  detail::require(g.block_size > 0, "prior.geometry", "prior was not built");
  return Selector(prior, pooled, params).run();
}

}  // namespace dynamicrad
