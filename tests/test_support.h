// Shared helpers for the core and CPU tests: a portable deterministic RNG, random tensors, random
// geometries, an error-message matcher and an independent naive attention used as a second oracle.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "dynamicrad/attention.h"
#include "dynamicrad/error.h"
#include "dynamicrad/geometry.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/tensor.h"
#include "random_stream.h"

// Expects `statement` to throw dynamicrad::Error whose field() is exactly `expected_field`.
#define EXPECT_DR_FIELD(statement, expected_field)                                                        \
  do {                                                                                                    \
    try {                                                                                                 \
      statement;                                                                                          \
      ADD_FAILURE() << "expected dynamicrad::Error with field \"" << (expected_field)                   \
                    << "\" from: " #statement;                                                            \
    } catch (const ::dynamicrad::Error& dr_e_) {                                                          \
      EXPECT_EQ(dr_e_.field(), std::string(expected_field)) << "message: " << dr_e_.what()              \
                                                              << " (from: " #statement ")";             \
    } catch (const std::exception& dr_e_) {                                                               \
      ADD_FAILURE() << "expected dynamicrad::Error, got another exception: " << dr_e_.what()            \
                    << " (from: " #statement ")";                                                         \
    }                                                                                                     \
  } while (0)

namespace dr_test {


// True when `text` contains `word` as a whole identifier (not inside a longer name such as
// "requires" for "q"); identifier characters are letters, digits and '_'.
inline bool names_word(const std::string& text, const std::string& word) {
  auto ident = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  for (std::size_t pos = text.find(word); pos != std::string::npos; pos = text.find(word, pos + 1)) {
    const bool left_ok = pos == 0 || !ident(text[pos - 1]);
    const std::size_t end = pos + word.size();
    const bool right_ok = end >= text.size() || !ident(text[end]);
    if (left_ok && right_ok) return true;
  }
  return false;
}

inline bool names_any(const std::string& text, const std::vector<std::string>& words) {
  for (const auto& w : words)
    if (names_word(text, w)) return true;
  return false;
}

inline std::string join(const std::vector<std::string>& words) {
  std::string s;
  for (const auto& w : words) s += (s.empty() ? "" : " or ") + w;
  return s;
}

// The message of the dynamicrad::Error that `call` throws, or "(no error)".
template <class Call>
std::string error_message(Call&& call) {
  try {
    call();
  } catch (const dynamicrad::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace dr_test

// Expects `statement` to throw dynamicrad::Error whose message names one of the given words (as a
// whole identifier), e.g. EXPECT_DR_ERROR(validate(g), "block_size").
#define EXPECT_DR_ERROR(statement, ...)                                                        \
  do {                                                                                         \
    const std::vector<std::string> dr_words_{__VA_ARGS__};                                     \
    try {                                                                                      \
      statement;                                                                               \
      ADD_FAILURE() << "expected dynamicrad::Error naming " << ::dr_test::join(dr_words_)      \
                    << " from: " #statement;                                                   \
    } catch (const ::dynamicrad::Error& dr_e_) {                                               \
      EXPECT_TRUE(::dr_test::names_any(dr_e_.what(), dr_words_))                               \
          << "message \"" << dr_e_.what() << "\" should name " << ::dr_test::join(dr_words_)   \
          << " (from: " #statement ")";                                                        \
    } catch (const std::exception& dr_e_) {                                                    \
      ADD_FAILURE() << "expected dynamicrad::Error, got another exception: " << dr_e_.what()   \
                    << " (from: " #statement ")";                                              \
    }                                                                                          \
  } while (0)

namespace dr_test {

namespace dr = dynamicrad;

inline std::string describe(const dr::VideoGeometry& g) {
  std::ostringstream os;
  os << "geometry{batch=" << g.batch << " heads=" << g.heads << " head_dim=" << g.head_dim
     << " frames=" << g.frames << " height=" << g.height << " width=" << g.width
     << " text_tokens=" << g.text_tokens << " text_placement=" << dr::to_string(g.text_placement)
     << " block_size=" << g.block_size << " order=" << dr::to_string(g.order) << " tile={"
     << g.tile.t << "," << g.tile.h << "," << g.tile.w << "}}";
  return os.str();
}

inline std::string describe(const dr::RadialPriorParams& p) {
  std::ostringstream os;
  os.precision(17);
  os << "prior{gamma=" << p.gamma << " lambda=" << p.lambda << " theta_m=" << p.theta_m
     << " theta_c=" << p.theta_c << " dense_adjacent=" << p.dense_adjacent
     << " first_frame_sink=" << p.first_frame_sink << "}";
  return os.str();
}

// Tiles whose volume is each block size (besides the default one).
inline std::vector<dr::Tile> tiles_for(int block_size) {
  switch (block_size) {
    case 32: return {{1, 4, 8}, {1, 1, 32}, {2, 4, 4}, {4, 2, 4}, {1, 8, 4}};
    case 64: return {{1, 8, 8}, {4, 4, 4}, {2, 2, 16}, {1, 4, 16}};
    default: return {{2, 8, 8}, {1, 8, 16}, {8, 4, 4}, {2, 4, 16}};
  }
}

// A random valid geometry with at most `max_tokens` tokens. Tokens per frame are usually not a
// multiple of the block; 1-frame videos, text prefixes and suffixes, both orders and custom tiles
// all occur.
inline dr::VideoGeometry random_geometry(Rng& rng, std::int64_t max_tokens) {
  for (;;) {
    dr::VideoGeometry g;
    g.block_size = static_cast<int>(rng.pick(std::vector<std::int64_t>{32, 64, 128}));
    g.frames = rng.coin(0.1) ? 1 : rng.integer(1, 12);
    g.height = rng.integer(1, 24);
    g.width = rng.integer(1, 24);
    const double text_roll = rng.uniform();
    if (text_roll < 0.2) {
      g.text_tokens = rng.integer(1, 80);
      g.text_placement = dr::TextPlacement::prefix;
    } else if (text_roll < 0.4) {
      g.text_tokens = rng.integer(1, 80);
      g.text_placement = dr::TextPlacement::suffix;
    }
    g.order = rng.coin() ? dr::TokenOrder::raster : dr::TokenOrder::tiled3d;
    if (g.order == dr::TokenOrder::tiled3d && rng.coin(0.3)) g.tile = rng.pick(tiles_for(g.block_size));
    g.heads = rng.integer(1, 3);
    g.batch = rng.integer(1, 2);
    g.head_dim = rng.pick(std::vector<std::int64_t>{1, 8, 16, 32});
    const std::int64_t total = g.frames * g.height * g.width + g.text_tokens;
    if (total <= max_tokens && total >= 1) return g;
  }
}

// Random valid prior parameters spread over their whole ranges.
inline dr::RadialPriorParams random_prior_params(Rng& rng) {
  dr::RadialPriorParams p;
  p.gamma = rng.coin(0.15) ? std::ldexp(1.0, static_cast<int>(rng.integer(-3, 4)))
                           : rng.log_uniform(1.0 / 16.0, 16.0);
  p.lambda = rng.coin(0.15) ? std::ldexp(1.0, static_cast<int>(rng.integer(-4, 4)))
                            : rng.log_uniform(1.0 / 16.0, 16.0);
  p.theta_m = rng.coin(0.15) ? 0.0 : rng.uniform(0.0, 0.95);
  p.theta_c = rng.coin(0.15) ? 0.0 : rng.uniform(0.0, 0.95);
  p.dense_adjacent = rng.coin(0.3);
  p.first_frame_sink = rng.coin(0.5);
  return p;
}

// An f32 tensor of N(0, stddev^2) values.
inline dr::HostTensor random_tensor(Rng& rng, dr::Shape shape, double stddev = 1.0,
                                    dr::DType dtype = dr::DType::f32) {
  dr::HostTensor t(dtype, shape);
  for (std::int64_t i = 0; i < shape.elements(); ++i) t.set(i, static_cast<float>(stddev * rng.normal()));
  return t;
}

inline dr::Shape make_shape(std::int64_t batch, std::int64_t tokens, std::int64_t heads,
                            std::int64_t head_dim) {
  dr::Shape s;
  s.batch = batch;
  s.tokens = tokens;
  s.heads = heads;
  s.head_dim = head_dim;
  return s;
}

// Copies `src` into a new tensor of `dtype` (rounding through the library's conversions).
inline dr::HostTensor convert(const dr::HostTensor& src, dr::DType dtype) {
  dr::HostTensor t(dtype, src.shape());
  for (std::int64_t i = 0; i < src.shape().elements(); ++i) t.set(i, src.get(i));
  return t;
}

inline void fill(dr::HostTensor& t, float value) {
  for (std::int64_t i = 0; i < t.shape().elements(); ++i) t.set(i, value);
}

// A CSR layout from explicit per-row column lists (rows in row(b, h, q_block) order).
inline dr::BlockLayout make_layout(std::int64_t batch, std::int64_t heads, std::int64_t tokens,
                                   int block_size, const std::vector<std::vector<std::int32_t>>& rows) {
  dr::BlockLayout l;
  l.batch = batch;
  l.heads = heads;
  l.tokens = tokens;
  l.block_size = block_size;
  l.blocks = (tokens + block_size - 1) / block_size;
  l.row_offsets.push_back(0);
  for (const auto& r : rows) {
    l.col_indices.insert(l.col_indices.end(), r.begin(), r.end());
    l.row_offsets.push_back(static_cast<std::int64_t>(l.col_indices.size()));
  }
  return l;
}

// Columns of one CSR row.
inline std::vector<std::int32_t> row_cols(const dr::BlockLayout& l, std::int64_t row) {
  return std::vector<std::int32_t>(l.col_indices.begin() + l.row_offsets[row],
                                   l.col_indices.begin() + l.row_offsets[row + 1]);
}

// Independent naive attention in double: out [batch, tokens, heads, head_dim] and lse
// [batch, heads, tokens]. With a layout only its blocks take part; a row with no key gets zero
// output and -inf lse.
struct NaiveResult {
  std::vector<double> out;
  std::vector<double> lse;
};

inline NaiveResult naive_attention(const dr::HostTensor& q, const dr::HostTensor& k,
                                   const dr::HostTensor& v, double scale,
                                   const dr::BlockLayout* layout) {
  const dr::Shape s = q.shape();
  const std::int64_t T = s.tokens, H = s.heads, D = s.head_dim;
  NaiveResult r;
  r.out.assign(static_cast<std::size_t>(s.elements()), 0.0);
  r.lse.assign(static_cast<std::size_t>(s.batch * H * T), -std::numeric_limits<double>::infinity());
  std::vector<char> allowed(static_cast<std::size_t>(T));
  std::vector<double> scores(static_cast<std::size_t>(T));
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < T; ++i) {
        if (layout) {
          std::fill(allowed.begin(), allowed.end(), 0);
          const std::int64_t row = layout->row(b, h, i / layout->block_size);
          for (std::int64_t e = layout->row_offsets[row]; e < layout->row_offsets[row + 1]; ++e) {
            const std::int64_t c = layout->col_indices[e];
            for (std::int64_t j = c * layout->block_size;
                 j < std::min<std::int64_t>(T, (c + 1) * layout->block_size); ++j)
              allowed[j] = 1;
          }
        } else {
          std::fill(allowed.begin(), allowed.end(), 1);
        }
        double m = -std::numeric_limits<double>::infinity();
        for (std::int64_t j = 0; j < T; ++j) {
          if (!allowed[j]) continue;
          double dot = 0.0;
          for (std::int64_t d = 0; d < D; ++d)
            dot += static_cast<double>(q.get(q.index(b, i, h, d))) * k.get(k.index(b, j, h, d));
          scores[j] = dot * scale;
          m = std::max(m, scores[j]);
        }
        if (m == -std::numeric_limits<double>::infinity()) continue;
        double sum = 0.0;
        for (std::int64_t j = 0; j < T; ++j)
          if (allowed[j]) sum += std::exp(scores[j] - m);
        for (std::int64_t j = 0; j < T; ++j) {
          if (!allowed[j]) continue;
          const double p = std::exp(scores[j] - m) / sum;
          for (std::int64_t d = 0; d < D; ++d)
            r.out[q.index(b, i, h, d)] += p * v.get(v.index(b, j, h, d));
        }
        r.lse[(b * H + h) * T + i] = m + std::log(sum);
      }
  return r;
}

}  // namespace dr_test
