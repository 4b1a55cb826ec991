#include "dynamicrad/layout.h"

#include <algorithm>

#include "core/check.h"
#include "dynamicrad/prior.h"

namespace dynamicrad {

std::int64_t BlockLayout::bytes() const {
  return static_cast<std::int64_t>(row_offsets.size() * sizeof(std::int64_t) +
                                   col_indices.size() * sizeof(std::int32_t));
}

void validate(const BlockLayout& l) {
  using detail::require;
  require(l.batch >= 1, "layout.batch", std::to_string(l.batch) + ": must be >= 1");
  require(l.heads >= 1, "layout.heads", std::to_string(l.heads) + ": must be >= 1");
  require(l.tokens >= 1, "layout.tokens", std::to_string(l.tokens) + ": must be >= 1");
  require(l.block_size == 32 || l.block_size == 64 || l.block_size == 128, "layout.block_size",
          std::to_string(l.block_size) + ": allowed values are 32, 64, 128");
  const std::int64_t blocks = (l.tokens + l.block_size - 1) / l.block_size;
  require(l.blocks == blocks, "layout.blocks",
          std::to_string(l.blocks) + ": must be ceil(tokens / block_size) = " + std::to_string(blocks));
  require(static_cast<std::int64_t>(l.row_offsets.size()) == l.rows() + 1, "layout.row_offsets",
          "holds " + std::to_string(l.row_offsets.size()) + " entries, expected batch * heads * blocks + 1 = " +
              std::to_string(l.rows() + 1));
  require(l.row_offsets.front() == 0, "layout.row_offsets", "must start at 0");
  require(l.row_offsets.back() == l.kept(), "layout.row_offsets",
          "last entry " + std::to_string(l.row_offsets.back()) + " must equal col_indices size " +
              std::to_string(l.kept()));
  // The loops test first and build a message only on failure: this runs on every plan.
  for (std::int64_t r = 0; r < l.rows(); ++r) {
    const std::int64_t begin = l.row_offsets[r], end = l.row_offsets[r + 1];
    if (begin > end) throw Error("layout.row_offsets", "decreases at row " + std::to_string(r));
    for (std::int64_t i = begin; i < end; ++i) {
      const std::int32_t c = l.col_indices[i];
      if (c < 0 || c >= l.blocks) {
        throw Error("layout.col_indices", "row " + std::to_string(r) + " holds block " + std::to_string(c) +
                                              ": allowed range [0, " + std::to_string(l.blocks - 1) + "]");
      }
      if (i > begin && l.col_indices[i - 1] >= c) {
        throw Error("layout.col_indices", "row " + std::to_string(r) + " is not strictly ascending");
      }
    }
  }
}

BlockLayout full_layout(std::int64_t batch, std::int64_t heads, std::int64_t tokens, int block_size) {
  BlockLayout l;
  l.batch = batch;
  l.heads = heads;
  l.tokens = tokens;
  l.block_size = block_size;
  l.blocks = block_size > 0 ? (tokens + block_size - 1) / block_size : 0;
  detail::require(batch >= 1 && heads >= 1 && tokens >= 1 && block_size > 0, "full_layout",
                  "batch, heads, tokens and block_size must be >= 1");
  l.row_offsets.reserve(static_cast<std::size_t>(l.rows() + 1));
  l.row_offsets.push_back(0);
  l.col_indices.reserve(static_cast<std::size_t>(l.rows() * l.blocks));
  for (std::int64_t r = 0; r < l.rows(); ++r) {
    for (std::int64_t c = 0; c < l.blocks; ++c) l.col_indices.push_back(static_cast<std::int32_t>(c));
    l.row_offsets.push_back(static_cast<std::int64_t>(l.col_indices.size()));
  }
  validate(l);
  return l;
}

BlockLayout layout_from_prior(const RadialPrior& prior, std::int64_t batch, std::int64_t heads) {
  BlockLayout l;
  l.batch = batch;
  l.heads = heads;
  l.tokens = total_tokens(prior.geometry);
  l.block_size = prior.geometry.block_size;
  l.blocks = prior.blocks;
  detail::require(batch >= 1 && heads >= 1, "layout_from_prior", "batch and heads must be >= 1");
  l.row_offsets.reserve(static_cast<std::size_t>(l.rows() + 1));
  l.row_offsets.push_back(0);
  for (std::int64_t bh = 0; bh < batch * heads; ++bh) {
    l.col_indices.insert(l.col_indices.end(), prior.col_indices.begin(), prior.col_indices.end());
    for (std::int64_t r = 0; r < prior.blocks; ++r) {
      l.row_offsets.push_back(bh * prior.size() + prior.row_offsets[r + 1]);
    }
  }
  return l;
}

LayoutStats layout_stats(const BlockLayout& l, const RadialPrior* prior) {
  validate(l);
  if (prior != nullptr) {
    detail::require(prior->blocks == l.blocks && total_tokens(prior->geometry) == l.tokens, "prior",
                    "geometry does not match the layout (blocks " + std::to_string(prior->blocks) +
                        " vs " + std::to_string(l.blocks) + ")");
  }
  LayoutStats s;
  const double grid = static_cast<double>(l.blocks) * static_cast<double>(l.blocks);
  const auto block_tokens = [&](std::int64_t b) {
    return static_cast<double>(std::min<std::int64_t>(l.block_size, l.tokens - b * l.block_size));
  };
  s.head_sparsity.assign(static_cast<std::size_t>(l.heads), 0.0);
  s.min_row_blocks = l.blocks;
  double token_pairs = 0.0;
  for (std::int64_t b = 0; b < l.batch; ++b) {
    for (std::int64_t h = 0; h < l.heads; ++h) {
      std::int64_t kept = 0;
      for (std::int64_t qb = 0; qb < l.blocks; ++qb) {
        const std::int64_t r = l.row(b, h, qb);
        const std::int64_t n = l.row_offsets[r + 1] - l.row_offsets[r];
        kept += n;
        s.min_row_blocks = std::min(s.min_row_blocks, n);
        double cols = 0.0;
        for (std::int64_t i = l.row_offsets[r]; i < l.row_offsets[r + 1]; ++i) cols += block_tokens(l.col_indices[i]);
        token_pairs += block_tokens(qb) * cols;
      }
      s.head_sparsity[h] += (1.0 - static_cast<double>(kept) / grid) / static_cast<double>(l.batch);
    }
  }
  const double heads_total = static_cast<double>(l.batch * l.heads);
  s.density = static_cast<double>(l.kept()) / (grid * heads_total);
  s.sparsity = 1.0 - s.density;
  s.token_density = token_pairs / (static_cast<double>(l.tokens) * static_cast<double>(l.tokens) * heads_total);
  s.bytes = l.bytes();
  if (prior != nullptr) {
    std::vector<std::int64_t> total, kept;
    const auto bump = [](std::vector<std::int64_t>& v, std::int64_t d) {
      if (static_cast<std::int64_t>(v.size()) <= d) v.resize(static_cast<std::size_t>(d + 1), 0);
      ++v[d];
    };
    for (std::int64_t qb = 0; qb < l.blocks; ++qb) {
      for (std::int64_t kb = 0; kb < l.blocks; ++kb) {
        const std::int64_t d = block_frame_distance(*prior, qb, kb);
        if (d >= 0) bump(total, d);
      }
    }
    for (std::int64_t r = 0; r < l.rows(); ++r) {
      const std::int64_t qb = r % l.blocks;
      for (std::int64_t i = l.row_offsets[r]; i < l.row_offsets[r + 1]; ++i) {
        const std::int64_t d = block_frame_distance(*prior, qb, l.col_indices[i]);
        if (d >= 0) bump(kept, d);
      }
    }
    kept.resize(total.size(), 0);
    for (std::size_t d = 0; d < total.size(); ++d) {
      if (total[d] == 0) continue;
      s.by_distance.push_back(DistanceStats{static_cast<std::int64_t>(d), total[d],
                                            static_cast<double>(kept[d]) /
                                                (static_cast<double>(total[d]) * heads_total)});
    }
  }
  return s;
}

}  // namespace dynamicrad
