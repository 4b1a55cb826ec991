// Block layout: the per-head block-sparse pattern every attention backend consumes.
//
// One CSR over all (batch, head, query block) rows: row r = (b * heads + h) * blocks + q_block holds
// the key blocks col_indices[row_offsets[r] .. row_offsets[r + 1]), ascending. Self-attention only:
// query and key sequences have the same length and blocking.
#pragma once

#include <cstdint>
#include <vector>

namespace dynamicrad {

struct RadialPrior;

struct BlockLayout {
  std::int64_t batch = 0;
  std::int64_t heads = 0;
  std::int64_t tokens = 0;               // sequence length (query == key)
  int block_size = 0;                    // 32, 64 or 128
  std::int64_t blocks = 0;               // ceil(tokens / block_size)
  std::vector<std::int64_t> row_offsets; // [batch * heads * blocks + 1]
  std::vector<std::int32_t> col_indices; // [row_offsets.back()]

  std::int64_t rows() const { return batch * heads * blocks; }
  std::int64_t row(std::int64_t b, std::int64_t h, std::int64_t q_block) const {
    return (b * heads + h) * blocks + q_block;
  }
  std::int64_t kept() const { return static_cast<std::int64_t>(col_indices.size()); }
  // Bytes held by the two index arrays.
  std::int64_t bytes() const;
};

// Throws Error when the sizes disagree, a column is out of range or a row is not ascending.
void validate(const BlockLayout& layout);

// Every block kept (sparse attention then equals dense attention).
BlockLayout full_layout(std::int64_t batch, std::int64_t heads, std::int64_t tokens, int block_size);

// The radial prior alone (forced and candidate blocks, no selection) for every batch element and
// head: the static Radial Attention mask.
BlockLayout layout_from_prior(const RadialPrior& prior, std::int64_t batch, std::int64_t heads);

struct DistanceStats {
  std::int64_t distance = 0;      // smallest frame distance between the two blocks
  std::int64_t total = 0;         // block pairs at this distance, per (batch, head)
  double kept_share = 0.0;        // share of them kept, averaged over (batch, head)
};

struct LayoutStats {
  double density = 0.0;          // kept blocks / blocks^2 over all (batch, head)
  double sparsity = 0.0;         // 1 - density: share of block work skipped (a short block costs a full one)
  double token_density = 0.0;    // kept token pairs / tokens^2
  std::vector<double> head_sparsity;   // [heads], averaged over batch
  std::vector<DistanceStats> by_distance; // video block pairs, by frame distance (needs a prior)
  std::int64_t min_row_blocks = 0;  // fewest blocks in a row
  std::int64_t bytes = 0;
};

// prior may be null (no per-distance statistics); when given its geometry must match the layout.
LayoutStats layout_stats(const BlockLayout& layout, const RadialPrior* prior);

}  // namespace dynamicrad
