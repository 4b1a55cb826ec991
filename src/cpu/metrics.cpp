#include "dynamicrad/metrics.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/parallel.h"

namespace dynamicrad {

double relative_l2_error(const ConstTensor& approx, const ConstTensor& exact) {
  detail::require(exact.data != nullptr, "exact", "data is null");
  detail::require_shape(approx, exact.shape, "approx");
  double diff = 0.0, norm = 0.0;
  for (std::int64_t i = 0; i < exact.shape.elements(); ++i) {
    const double e = load_as_float(exact.data, exact.dtype, i);
    const double a = load_as_float(approx.data, approx.dtype, i);
    diff += (a - e) * (a - e);
    norm += e * e;
  }
  if (norm == 0.0) return diff == 0.0 ? 0.0 : INFINITY;
  return std::sqrt(diff / norm);
}

double attention_mass_recall(const ConstTensor& q, const ConstTensor& k, const BlockLayout& layout,
                             const AttentionOptions& options) {
  validate(layout);
  // k stands in for v and out: only the shapes are checked (nothing is written)
  detail::check_attention_shapes(AttentionArgs{q, k, k, MutableTensor{const_cast<void*>(k.data), k.dtype, k.shape}},
                                 &layout);
  const Shape& s = q.shape;
  const std::int64_t n = s.tokens, dim = s.head_dim;
  const double scale = options.scale != 0.0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(dim));
  const auto row_of = [&](const ConstTensor& t, std::int64_t b, std::int64_t tok, std::int64_t h) {
    std::vector<double> v(static_cast<std::size_t>(dim));
    for (std::int64_t d = 0; d < dim; ++d) v[d] = load_as_float(t.data, t.dtype, ((b * n + tok) * s.heads + h) * dim + d);
    return v;
  };
  const int threads = detail::resolve_threads(options.threads);
  std::vector<double> recall(static_cast<std::size_t>(s.batch * s.heads * n));
  detail::parallel_for(s.batch * s.heads, threads, [&](std::int64_t bh, int) {
    const std::int64_t b = bh / s.heads, h = bh % s.heads;
    std::vector<std::vector<double>> keys;
    keys.reserve(static_cast<std::size_t>(n));
    for (std::int64_t j = 0; j < n; ++j) keys.push_back(row_of(k, b, j, h));
    std::vector<double> scores(static_cast<std::size_t>(n));
    std::vector<char> kept(static_cast<std::size_t>(layout.blocks));
    for (std::int64_t i = 0; i < n; ++i) {
      const std::vector<double> qi = row_of(q, b, i, h);
      double max_score = -INFINITY;
      for (std::int64_t j = 0; j < n; ++j) {
        double dot = 0.0;
        for (std::int64_t d = 0; d < dim; ++d) dot += qi[d] * keys[j][d];
        scores[j] = dot * scale;
        max_score = std::max(max_score, scores[j]);
      }
      std::fill(kept.begin(), kept.end(), 0);
      const std::int64_t r = layout.row(b, h, i / layout.block_size);
      for (std::int64_t e = layout.row_offsets[r]; e < layout.row_offsets[r + 1]; ++e) kept[layout.col_indices[e]] = 1;
      double total = 0.0, inside = 0.0;
      for (std::int64_t j = 0; j < n; ++j) {
        const double p = std::exp(scores[j] - max_score);
        total += p;
        if (kept[j / layout.block_size]) inside += p;
      }
      recall[bh * n + i] = inside / total;
    }
  });
  double sum = 0.0;
  for (double r : recall) sum += r;
  return sum / static_cast<double>(recall.size());
}

}  // namespace dynamicrad
