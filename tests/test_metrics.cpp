// Tests for metrics.h: relative L2 error and attention-mass recall.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "dynamicrad/attention.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/metrics.h"
#include "test_support.h"

namespace dr = dynamicrad;

namespace {

dr::HostTensor from_values(const dr::Shape& s, const std::vector<float>& values) {
  dr::HostTensor t(dr::DType::f32, s);
  for (std::size_t i = 0; i < values.size(); ++i) t.set(static_cast<std::int64_t>(i), values[i]);
  return t;
}

// Recall computed naively: for every (b, h, query token) the softmax share on kept keys, averaged.
double naive_recall(const dr::HostTensor& q, const dr::HostTensor& k, const dr::BlockLayout& l, double scale) {
  const dr::Shape s = q.shape();
  double total = 0.0;
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads; ++h)
      for (std::int64_t i = 0; i < s.tokens; ++i) {
        std::vector<double> z(static_cast<std::size_t>(s.tokens));
        double m = -std::numeric_limits<double>::infinity();
        for (std::int64_t j = 0; j < s.tokens; ++j) {
          double dot = 0.0;
          for (std::int64_t d = 0; d < s.head_dim; ++d)
            dot += static_cast<double>(q.get(q.index(b, i, h, d))) * k.get(k.index(b, j, h, d));
          z[j] = dot * scale;
          m = std::max(m, z[j]);
        }
        std::vector<char> kept(static_cast<std::size_t>(s.tokens), 0);
        const std::int64_t row = l.row(b, h, i / l.block_size);
        for (std::int64_t e = l.row_offsets[row]; e < l.row_offsets[row + 1]; ++e)
          for (std::int64_t j = l.col_indices[e] * l.block_size;
               j < std::min<std::int64_t>(s.tokens, (l.col_indices[e] + 1) * l.block_size); ++j)
            kept[j] = 1;
        double all = 0.0, in = 0.0;
        for (std::int64_t j = 0; j < s.tokens; ++j) {
          const double p = std::exp(z[j] - m);
          all += p;
          if (kept[j]) in += p;
        }
        total += in / all;
      }
  return total / static_cast<double>(s.batch * s.heads * s.tokens);
}

}  // namespace

TEST(Metrics, RelativeL2Error) {
  const dr::Shape s = dr_test::make_shape(1, 2, 1, 2);
  const dr::HostTensor exact = from_values(s, {3.0f, 4.0f, 0.0f, 0.0f});
  EXPECT_EQ(dr::relative_l2_error(exact.view(), exact.view()), 0.0);
  // ||(0, 1, 2, 2)|| / ||(3, 4, 0, 0)|| = 3 / 5.
  const dr::HostTensor approx = from_values(s, {3.0f, 5.0f, 2.0f, 2.0f});
  EXPECT_NEAR(dr::relative_l2_error(approx.view(), exact.view()), 0.6, 1e-12);
  // Not symmetric: ||diff|| / ||approx|| = 3 / sqrt(9 + 25 + 4 + 4).
  EXPECT_NEAR(dr::relative_l2_error(exact.view(), approx.view()), 3.0 / std::sqrt(42.0), 1e-12);
  const dr::HostTensor zeros(dr::DType::f32, s);
  EXPECT_EQ(dr::relative_l2_error(zeros.view(), zeros.view()), 0.0);
  // Half precision inputs are read as their values.
  const dr::HostTensor approx_h = dr_test::convert(approx, dr::DType::f16);
  EXPECT_NEAR(dr::relative_l2_error(approx_h.view(), exact.view()), 0.6, 1e-12);
  // A larger random case against a hand loop.
  dr_test::Rng rng(1);
  const dr::Shape big = dr_test::make_shape(2, 33, 3, 7);
  const dr::HostTensor a = dr_test::random_tensor(rng, big), b = dr_test::random_tensor(rng, big);
  double num = 0.0, den = 0.0;
  for (std::int64_t i = 0; i < big.elements(); ++i) {
    num += std::pow(static_cast<double>(a.get(i)) - b.get(i), 2);
    den += std::pow(static_cast<double>(b.get(i)), 2);
  }
  EXPECT_NEAR(dr::relative_l2_error(a.view(), b.view()), std::sqrt(num / den), 1e-9);
}

TEST(Metrics, RelativeL2ErrorRejectsShapeMismatch) {
  const dr::HostTensor a(dr::DType::f32, dr_test::make_shape(1, 4, 2, 8));
  const dr::HostTensor b(dr::DType::f32, dr_test::make_shape(1, 4, 2, 4));
  const dr::HostTensor c(dr::DType::f32, dr_test::make_shape(2, 4, 1, 8));  // same element count
  EXPECT_THROW(dr::relative_l2_error(a.view(), b.view()), dr::Error);
  EXPECT_THROW(dr::relative_l2_error(a.view(), c.view()), dr::Error);
}

TEST(Metrics, RecallOfFullLayoutIsOne) {
  dr_test::Rng rng(2);
  const dr::Shape s = dr_test::make_shape(2, 75, 2, 16);
  const dr::HostTensor q = dr_test::random_tensor(rng, s, 2.0), k = dr_test::random_tensor(rng, s, 2.0);
  EXPECT_NEAR(dr::attention_mass_recall(q.view(), k.view(), dr::full_layout(2, 2, 75, 32), dr::AttentionOptions{}),
              1.0, 1e-12);
}

TEST(Metrics, RecallHandCaseWithUniformAttention) {
  // q = 0: every row is uniform over 40 keys. Block 0 (32 tokens) keeps block 0: 32 / 40; block 1
  // (8 tokens) keeps block 1: 8 / 40. Mean over tokens: (32 * 0.8 + 8 * 0.2) / 40 = 0.68.
  const dr::Shape s = dr_test::make_shape(1, 40, 1, 4);
  const dr::HostTensor q(dr::DType::f32, s);
  dr_test::Rng rng(3);
  const dr::HostTensor k = dr_test::random_tensor(rng, s);
  const dr::BlockLayout l = dr_test::make_layout(1, 1, 40, 32, {{0}, {1}});
  EXPECT_NEAR(dr::attention_mass_recall(q.view(), k.view(), l, dr::AttentionOptions{}), 0.68, 1e-12);
  // An empty row contributes 0.
  const dr::BlockLayout e = dr_test::make_layout(1, 1, 40, 32, {{0, 1}, {}});
  EXPECT_NEAR(dr::attention_mass_recall(q.view(), k.view(), e, dr::AttentionOptions{}), 32.0 / 40.0, 1e-12);
}

TEST(Metrics, RecallMatchesNaiveAndGrowsWithBlocks) {
  dr_test::Rng rng(4);
  const dr::Shape s = dr_test::make_shape(2, 140, 2, 8);
  const dr::HostTensor q = dr_test::random_tensor(rng, s, 1.5), k = dr_test::random_tensor(rng, s, 1.5);
  const std::int64_t blocks = 5;  // block 32: 4 full blocks and 12 tokens
  // Start with the diagonal, then add one random block at a time until the layout is full.
  std::vector<std::vector<std::int32_t>> rows(static_cast<std::size_t>(2 * 2 * blocks));
  for (std::size_t r = 0; r < rows.size(); ++r) rows[r].push_back(static_cast<std::int32_t>(r % blocks));
  double previous = -1.0;
  for (int step = 0; step < 100; ++step) {
    const dr::BlockLayout l = dr_test::make_layout(2, 2, 140, 32, rows);
    for (double scale : {0.0, 0.8}) {
      dr::AttentionOptions o;
      o.scale = scale;
      const double recall = dr::attention_mass_recall(q.view(), k.view(), l, o);
      EXPECT_GE(recall, 0.0);
      EXPECT_LE(recall, 1.0 + 1e-12);
      const double want = naive_recall(q, k, l, scale == 0.0 ? 1.0 / std::sqrt(8.0) : scale);
      EXPECT_NEAR(recall, want, 1e-10) << "step " << step << " scale " << scale;
      if (scale == 0.0) {
        EXPECT_GT(recall, previous) << "adding a block must raise recall (step " << step << ")";
        previous = recall;
      }
    }
    // Add a block not yet present to a random row that is not full.
    std::vector<std::size_t> open;
    for (std::size_t r = 0; r < rows.size(); ++r)
      if (static_cast<std::int64_t>(rows[r].size()) < blocks) open.push_back(r);
    if (open.empty()) break;
    auto& row = rows[open[static_cast<std::size_t>(rng.integer(0, static_cast<std::int64_t>(open.size()) - 1))]];
    std::vector<std::int32_t> missing;
    for (std::int32_t c = 0; c < blocks; ++c)
      if (std::find(row.begin(), row.end(), c) == row.end()) missing.push_back(c);
    row.push_back(missing[static_cast<std::size_t>(rng.integer(0, static_cast<std::int64_t>(missing.size()) - 1))]);
    std::sort(row.begin(), row.end());
  }
  EXPECT_NEAR(previous, 1.0, 1e-12) << "the layout ended full";
}
