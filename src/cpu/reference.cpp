// The dense reference (the oracle): exact softmax attention with double accumulation.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/check.h"
#include "core/parallel.h"
#include "cpu/store.h"
#include "dynamicrad/attention.h"

namespace dynamicrad {

namespace {

// The tensor as float, transposed to [batch, heads, tokens, head_dim] so that rows are contiguous.
std::vector<float> to_bhtd(const ConstTensor& t) {
  const Shape& s = t.shape;
  std::vector<float> out(static_cast<std::size_t>(s.elements()));
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t tok = 0; tok < s.tokens; ++tok)
      for (std::int64_t h = 0; h < s.heads; ++h)
        for (std::int64_t d = 0; d < s.head_dim; ++d)
          out[static_cast<std::size_t>(((b * s.heads + h) * s.tokens + tok) * s.head_dim + d)] =
              load_as_float(t.data, t.dtype, ((b * s.tokens + tok) * s.heads + h) * s.head_dim + d);
  return out;
}

}  // namespace

void attention_reference(const AttentionArgs& args, const AttentionOptions& options, const BlockLayout* layout) {
  if (layout != nullptr) validate(*layout);
  check_attention_args(args, layout);
  detail::require(std::isfinite(options.scale), "options.scale", "must be finite");
  const Shape& s = args.q.shape;
  const std::int64_t n = s.tokens, dim = s.head_dim;
  const double scale = options.scale != 0.0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(dim));
  const std::vector<float> q = to_bhtd(args.q), k = to_bhtd(args.k), v = to_bhtd(args.v);
  const int threads = detail::resolve_threads(options.threads);
  detail::parallel_for(s.batch * s.heads * n, threads, [&](std::int64_t task, int) {
    const std::int64_t i = task % n;
    const std::int64_t bh = task / n;
    const std::int64_t b = bh / s.heads, h = bh % s.heads;
    // Allowed keys: everything, or the keys of the layout's blocks in this query's row.
    std::vector<std::int64_t> keys;
    if (layout == nullptr) {
      keys.resize(static_cast<std::size_t>(n));
      for (std::int64_t j = 0; j < n; ++j) keys[j] = j;
    } else {
      const std::int64_t r = layout->row(b, h, i / layout->block_size);
      for (std::int64_t e = layout->row_offsets[r]; e < layout->row_offsets[r + 1]; ++e) {
        const std::int64_t c = layout->col_indices[e];
        for (std::int64_t j = c * layout->block_size; j < std::min(n, (c + 1) * layout->block_size); ++j) {
          keys.push_back(j);
        }
      }
    }
    const float* qi = q.data() + (bh * n + i) * dim;
    std::vector<double> out(static_cast<std::size_t>(dim), 0.0);
    double lse = -std::numeric_limits<double>::infinity();
    if (!keys.empty()) {
      std::vector<double> scores(keys.size());
      double max_score = -std::numeric_limits<double>::infinity();
      for (std::size_t e = 0; e < keys.size(); ++e) {
        const float* kj = k.data() + (bh * n + keys[e]) * dim;
        double dot = 0.0;
        for (std::int64_t d = 0; d < dim; ++d) dot += static_cast<double>(qi[d]) * kj[d];
        scores[e] = dot * scale;
        max_score = std::max(max_score, scores[e]);
      }
      double sum = 0.0;
      for (std::size_t e = 0; e < keys.size(); ++e) {
        const double p = std::exp(scores[e] - max_score);
        sum += p;
        const float* vj = v.data() + (bh * n + keys[e]) * dim;
        for (std::int64_t d = 0; d < dim; ++d) out[d] += p * vj[d];
      }
      for (double& o : out) o /= sum;
      lse = max_score + std::log(sum);
    }
    const std::int64_t base = ((b * n + i) * s.heads + h) * dim;
    for (std::int64_t d = 0; d < dim; ++d) detail::store_float(args.out, base + d, static_cast<float>(out[d]));
    if (args.lse != nullptr) args.lse[bh * n + i] = static_cast<float>(lse);
  });
}

}  // namespace dynamicrad
