#include "dynamicrad/prior.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/parallel.h"
#include "dynamicrad/error.h"
#include "core/number_text.h"

namespace dynamicrad {

namespace {

std::string range_message(double value, const char* range) {
  return detail::shortest_text(value) + ": allowed range " + range;
}

int bit_length(std::int64_t d) {
  int bits = 0;
  while (d > 0) {
    ++bits;
    d >>= 1;
  }
  return bits;
}

// Smallest power of two >= n (2^ceil(log2 n)).
double ceil_pow2(std::int64_t n) {
  std::int64_t p = 1;
  while (p < n) p <<= 1;
  return static_cast<double>(p);
}

// The token-level rule of one frame distance d >= 1 (rule 2 of the header): the integer band
// half-width to keep, or -1 when the distance keeps nothing.
struct DistanceRule {
  std::int64_t half_width = -1;
  bool near = false;
};

std::vector<DistanceRule> distance_rules(const VideoGeometry& g, const RadialPriorParams& p) {
  const std::int64_t per_frame = tokens_per_frame(g);
  const double block = static_cast<double>(g.block_size);
  std::vector<DistanceRule> rules(static_cast<std::size_t>(g.frames));
  // |s - s'| < tokens per frame always holds, so a wider band is the whole frame; capping keeps the
  // integer conversion safe for huge gamma.
  const double cap = static_cast<double>(per_frame);
  for (std::int64_t d = 1; d < g.frames; ++d) {
    const double w = band_half_width(per_frame, p.gamma, d);
    DistanceRule& rule = rules[d];
    if (w >= block) {
      rule.near = true;
      rule.half_width = static_cast<std::int64_t>(std::floor(std::min(w, cap)));
    } else {
      const double k = std::max(1.0, std::floor(block / (p.lambda * w)));
      if (k > static_cast<double>(g.frames) || d % static_cast<std::int64_t>(k) != 0) continue;
      rule.half_width = g.block_size;
    }
  }
  return rules;
}

// Distinct frames of a block's video tokens, ascending.
std::vector<std::int64_t> block_frames(const BlockSpan& span) {
  std::vector<std::int64_t> frames;
  for (const TokenRun& run : span.runs) frames.push_back(run.frame);
  std::sort(frames.begin(), frames.end());
  frames.erase(std::unique(frames.begin(), frames.end()), frames.end());
  return frames;
}

// Number of s in [begin, begin + count) with |s - center| <= half_width.
std::int64_t band_count(std::int64_t begin, std::int64_t count, std::int64_t center,
                        std::int64_t half_width) {
  const std::int64_t lo = std::max(begin, center - half_width);
  const std::int64_t hi = std::min(begin + count - 1, center + half_width);
  return hi >= lo ? hi - lo + 1 : 0;
}

// Smallest |s - s'| between two spatial intervals.
std::int64_t interval_gap(const TokenRun& a, const TokenRun& b) {
  if (a.spatial_begin + a.count <= b.spatial_begin) return b.spatial_begin - (a.spatial_begin + a.count - 1);
  if (b.spatial_begin + b.count <= a.spatial_begin) return a.spatial_begin - (b.spatial_begin + b.count - 1);
  return 0;
}

class PriorBuilder {
 public:
  PriorBuilder(const VideoGeometry& g, const RadialPriorParams& p, int threads)
      : g_(g), p_(p), threads_(threads), spans_(block_spans(g)), rules_(distance_rules(g, p)) {
    frames_.reserve(spans_.size());
    for (const BlockSpan& span : spans_) frames_.push_back(block_frames(span));
  }

  RadialPrior build() {
    RadialPrior prior;
    prior.geometry = g_;
    prior.params = p_;
    prior.blocks = static_cast<std::int64_t>(spans_.size());
    prior.row_offsets.reserve(spans_.size() + 1);
    prior.row_offsets.push_back(0);
    prior.frame_offsets.push_back(0);
    for (std::size_t b = 0; b < spans_.size(); ++b) {
      prior.frame_lo.push_back(static_cast<std::int32_t>(spans_[b].frame_lo));
      prior.frame_hi.push_back(static_cast<std::int32_t>(spans_[b].frame_hi));
      for (std::int64_t f : frames_[b]) prior.frames.push_back(static_cast<std::int32_t>(f));
      prior.frame_offsets.push_back(static_cast<std::int64_t>(prior.frames.size()));
    }
    // Rows are independent: classify them in parallel, then concatenate in row order.
    std::vector<std::vector<std::pair<std::int32_t, BlockKind>>> rows(spans_.size());
    detail::parallel_for(static_cast<std::int64_t>(spans_.size()), threads_, [&](std::int64_t r, int) {
      for (std::size_t c = 0; c < spans_.size(); ++c) {
        BlockKind kind;
        if (classify(static_cast<std::size_t>(r), c, kind)) rows[r].emplace_back(static_cast<std::int32_t>(c), kind);
      }
    });
    for (const auto& row : rows) {
      for (const auto& [c, kind] : row) {
        prior.col_indices.push_back(c);
        prior.kinds.push_back(kind);
      }
      prior.row_offsets.push_back(static_cast<std::int64_t>(prior.col_indices.size()));
    }
    return prior;
  }

 private:
  bool is_dense(std::int64_t qf, std::int64_t kf) const {
    const std::int64_t d = qf > kf ? qf - kf : kf - qf;
    return d == 0 || (p_.first_frame_sink && kf == 0) || (p_.dense_adjacent && d == 1);
  }

  // True when block pair (r, c) is in the prior; sets its kind.
  bool classify(std::size_t r, std::size_t c, BlockKind& kind) const {
    const BlockSpan& rs = spans_[r];
    const BlockSpan& cs = spans_[c];
    if (rs.text_count > 0 || cs.text_count > 0) {
      kind = BlockKind::forced;
      return true;
    }
    bool any_band = false;
    std::int64_t d_min = -1;
    for (std::int64_t qf : frames_[r]) {
      for (std::int64_t kf : frames_[c]) {
        if (is_dense(qf, kf)) {
          kind = BlockKind::forced;
          return true;
        }
        const std::int64_t d = qf > kf ? qf - kf : kf - qf;
        d_min = d_min < 0 ? d : std::min(d_min, d);
        any_band = any_band || rules_[d].half_width >= 0;
      }
    }
    if (!any_band || !band_reaches(rs, cs)) return false;
    if (!passes_density_test(rs, cs)) return false;
    kind = rules_[d_min].near ? BlockKind::near : BlockKind::far;
    return true;
  }

  // Cheap rejection: does any band of any run pair reach across the spatial gap?
  bool band_reaches(const BlockSpan& rs, const BlockSpan& cs) const {
    for (const TokenRun& a : rs.runs) {
      for (const TokenRun& b : cs.runs) {
        const std::int64_t d = a.frame > b.frame ? a.frame - b.frame : b.frame - a.frame;
        const std::int64_t h = rules_[d].half_width;
        if (h >= 0 && interval_gap(a, b) <= h) return true;
      }
    }
    return false;
  }

  // The theta_c / theta_m test of the header, counting kept rows per key column from runs.
  bool passes_density_test(const BlockSpan& rs, const BlockSpan& cs) const {
    const double high_rows = p_.theta_c * static_cast<double>(rs.size);
    std::int64_t nonzero = 0;
    std::int64_t high = 0;
    for (const TokenRun& col_run : cs.runs) {
      for (std::int64_t i = 0; i < col_run.count; ++i) {
        const std::int64_t s = col_run.spatial_begin + i;
        std::int64_t kept = 0;
        for (const TokenRun& row_run : rs.runs) {
          const std::int64_t d = row_run.frame > col_run.frame ? row_run.frame - col_run.frame
                                                               : col_run.frame - row_run.frame;
          const std::int64_t h = rules_[d].half_width;
          if (h >= 0) kept += band_count(row_run.spatial_begin, row_run.count, s, h);
        }
        if (kept > 0) ++nonzero;
        if (static_cast<double>(kept) > high_rows) ++high;
      }
    }
    return nonzero > 0 && static_cast<double>(high) > p_.theta_m * static_cast<double>(nonzero);
  }

  const VideoGeometry& g_;
  const RadialPriorParams& p_;
  int threads_;
  std::vector<BlockSpan> spans_;
  std::vector<std::vector<std::int64_t>> frames_;
  std::vector<DistanceRule> rules_;
};

}  // namespace

void validate(const RadialPriorParams& p) {
  if (!(p.gamma > 0.0 && p.gamma <= 16.0)) {
    throw Error("prior.gamma", range_message(p.gamma, "(0, 16]"));
  }
  if (!(p.lambda >= 1.0 / 16.0 && p.lambda <= 16.0)) {
    throw Error("prior.lambda", range_message(p.lambda, "[0.0625, 16]"));
  }
  if (!(p.theta_m >= 0.0 && p.theta_m < 1.0)) {
    throw Error("prior.theta_m", range_message(p.theta_m, "[0, 1)"));
  }
  if (!(p.theta_c >= 0.0 && p.theta_c < 1.0)) {
    throw Error("prior.theta_c", range_message(p.theta_c, "[0, 1)"));
  }
}

double band_half_width(std::int64_t tokens_per_frame, double gamma, std::int64_t frame_distance) {
  return std::ldexp(ceil_pow2(tokens_per_frame) * gamma, -bit_length(frame_distance));
}

std::int64_t RadialPrior::count(BlockKind kind) const {
  return static_cast<std::int64_t>(std::count(kinds.begin(), kinds.end(), kind));
}

double RadialPrior::density() const {
  return blocks == 0 ? 0.0 : static_cast<double>(size()) / (static_cast<double>(blocks) * blocks);
}

RadialPrior build_radial_prior(const VideoGeometry& geometry, const RadialPriorParams& params, int threads) {
  validate(geometry);
  validate(params);
  if (threads < 0) throw Error("threads", std::to_string(threads) + ": must be >= 0 (0: every hardware thread)");
  return PriorBuilder(geometry, params, detail::resolve_threads(threads)).build();
}

std::int64_t block_frame_distance(const RadialPrior& prior, std::int64_t q_block, std::int64_t k_block) {
  std::int64_t best = -1;
  for (std::int64_t i = prior.frame_offsets[q_block]; i < prior.frame_offsets[q_block + 1]; ++i) {
    for (std::int64_t j = prior.frame_offsets[k_block]; j < prior.frame_offsets[k_block + 1]; ++j) {
      const std::int64_t d = std::abs(static_cast<std::int64_t>(prior.frames[i]) - prior.frames[j]);
      best = best < 0 ? d : std::min(best, d);
    }
  }
  return best;
}

}  // namespace dynamicrad
