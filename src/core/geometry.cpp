#include "dynamicrad/geometry.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/number_text.h"
#include "dynamicrad/error.h"

namespace dynamicrad {

namespace {

void require_at_least(std::int64_t value, std::int64_t low, const char* field) {
  if (value < low) {
    throw Error(field, std::to_string(value) + ": must be >= " + std::to_string(low));
  }
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

bool tile_is_default(const Tile& t) { return t.t == 0 && t.h == 0 && t.w == 0; }

}  // namespace

void require_batch_fits(const VideoGeometry& g, std::int64_t batch, const std::string& field) {
  // In doubles: the products themselves are what could overflow.
  const double tokens = static_cast<double>(g.frames) * static_cast<double>(g.height) *
                            static_cast<double>(g.width) + static_cast<double>(g.text_tokens);
  const double blocks = std::ceil(tokens / g.block_size);
  const double per_batch = std::max(tokens * static_cast<double>(g.heads) * static_cast<double>(g.head_dim),
                                    static_cast<double>(g.heads) * blocks * blocks);
  const double limit = std::ldexp(1.0, 62);
  if (static_cast<double>(batch) * per_batch > limit) {
    const double most = std::max(1.0, std::floor(limit / per_batch));
    throw Error(field, std::to_string(batch) + ": too large for this geometry (values and block pairs must stay "
                       "below 2^62); allowed at most " + detail::shortest_text(most));
  }
}

void validate(const VideoGeometry& g) {
  require_at_least(g.batch, 1, "geometry.batch");
  require_at_least(g.heads, 1, "geometry.heads");
  if (g.heads > kMaxHeads) {
    throw Error("geometry.heads", std::to_string(g.heads) + ": allowed range [1, " + std::to_string(kMaxHeads) + "]");
  }
  require_at_least(g.head_dim, 1, "geometry.head_dim");
  if (g.head_dim > 512) {
    throw Error("geometry.head_dim", std::to_string(g.head_dim) + ": allowed range [1, 512]");
  }
  require_at_least(g.frames, 1, "geometry.frames");
  require_at_least(g.height, 1, "geometry.height");
  require_at_least(g.width, 1, "geometry.width");
  require_at_least(g.text_tokens, 0, "geometry.text_tokens");
  if (g.text_tokens > 0 && g.text_placement == TextPlacement::none) {
    throw Error("geometry.text_placement",
                "none, but text_tokens = " + std::to_string(g.text_tokens) +
                    ": text tokens need placement prefix or suffix");
  }
  if (g.text_tokens == 0 && g.text_placement != TextPlacement::none) {
    throw Error("geometry.text_tokens", "0, but text_placement = " + to_string(g.text_placement) +
                                            ": give text_tokens >= 1 or placement none");
  }
  if (g.block_size != 32 && g.block_size != 64 && g.block_size != 128) {
    throw Error("geometry.block_size",
                std::to_string(g.block_size) + ": allowed values are 32, 64, 128");
  }
  // Sequence positions and block indices must fit the int32 indices of layouts and kernels.
  const double tokens = static_cast<double>(g.frames) * static_cast<double>(g.height) *
                            static_cast<double>(g.width) + static_cast<double>(g.text_tokens);
  if (tokens > static_cast<double>(std::numeric_limits<std::int32_t>::max())) {
    // a double: the product may not fit an integer
    throw Error("geometry",
                "frames * height * width + text_tokens = " + detail::shortest_text(tokens) + ": must be < 2^31");
  }
  require_batch_fits(g, g.batch, "geometry.batch");
  if (g.order == TokenOrder::raster && !tile_is_default(g.tile)) {
    throw Error("geometry.tile", "set while order is raster: a tile applies to order tiled3d only");
  }
  if (g.order == TokenOrder::tiled3d && !tile_is_default(g.tile)) {
    require_at_least(g.tile.t, 1, "geometry.tile.t");
    require_at_least(g.tile.h, 1, "geometry.tile.h");
    require_at_least(g.tile.w, 1, "geometry.tile.w");
    const std::int64_t volume = std::int64_t{g.tile.t} * g.tile.h * g.tile.w;  // ints could wrap
    if (g.tile.t > g.block_size || g.tile.h > g.block_size || g.tile.w > g.block_size || volume != g.block_size) {
      throw Error("geometry.tile", std::to_string(g.tile.t) + "x" + std::to_string(g.tile.h) + "x" +
                                       std::to_string(g.tile.w) + ": t * h * w must equal block_size " +
                                       std::to_string(g.block_size));
    }
  }
}

std::int64_t tokens_per_frame(const VideoGeometry& g) { return g.height * g.width; }
std::int64_t video_tokens(const VideoGeometry& g) { return g.frames * g.height * g.width; }
std::int64_t total_tokens(const VideoGeometry& g) { return video_tokens(g) + g.text_tokens; }
std::int64_t num_blocks(const VideoGeometry& g) { return ceil_div(total_tokens(g), g.block_size); }
std::int64_t video_begin(const VideoGeometry& g) {
  return g.text_placement == TextPlacement::prefix ? g.text_tokens : 0;
}

Tile default_tile(int block_size) {
  switch (block_size) {
    case 128: return Tile{2, 8, 8};
    case 64: return Tile{1, 8, 8};
    case 32: return Tile{1, 4, 8};
    default:
      throw Error("geometry.block_size",
                  std::to_string(block_size) + ": allowed values are 32, 64, 128");
  }
}

Tile effective_tile(const VideoGeometry& g) {
  return tile_is_default(g.tile) ? default_tile(g.block_size) : g.tile;
}

namespace {

// Native (raster) video index of frame f, row y, column x, relative to the first video token.
std::int64_t raster_index(const VideoGeometry& g, std::int64_t f, std::int64_t y, std::int64_t x) {
  return (f * g.height + y) * g.width + x;
}

// Appends the raster video indices in 3D-tiled order: full tiles first, then partial ones.
void append_tiled_video(const VideoGeometry& g, std::vector<std::int64_t>& out) {
  const Tile tile = effective_tile(g);
  const std::int64_t nt = ceil_div(g.frames, tile.t);
  const std::int64_t ny = ceil_div(g.height, tile.h);
  const std::int64_t nx = ceil_div(g.width, tile.w);
  for (int pass = 0; pass < 2; ++pass) {
    const bool want_full = pass == 0;
    for (std::int64_t ti = 0; ti < nt; ++ti) {
      for (std::int64_t yi = 0; yi < ny; ++yi) {
        for (std::int64_t xi = 0; xi < nx; ++xi) {
          const std::int64_t f0 = ti * tile.t, y0 = yi * tile.h, x0 = xi * tile.w;
          const std::int64_t f1 = std::min(f0 + tile.t, g.frames);
          const std::int64_t y1 = std::min(y0 + tile.h, g.height);
          const std::int64_t x1 = std::min(x0 + tile.w, g.width);
          const bool full = f1 - f0 == tile.t && y1 - y0 == tile.h && x1 - x0 == tile.w;
          if (full != want_full) continue;
          for (std::int64_t f = f0; f < f1; ++f)
            for (std::int64_t y = y0; y < y1; ++y)
              for (std::int64_t x = x0; x < x1; ++x) out.push_back(raster_index(g, f, y, x));
        }
      }
    }
  }
}

}  // namespace

std::vector<std::int64_t> token_permutation(const VideoGeometry& g) {
  validate(g);
  std::vector<std::int64_t> perm;
  perm.reserve(static_cast<std::size_t>(total_tokens(g)));
  const std::int64_t vb = video_begin(g);
  for (std::int64_t i = 0; i < vb; ++i) perm.push_back(i);
  if (g.order == TokenOrder::raster) {
    for (std::int64_t i = 0; i < video_tokens(g); ++i) perm.push_back(vb + i);
  } else {
    const std::size_t first = perm.size();
    append_tiled_video(g, perm);
    for (std::size_t i = first; i < perm.size(); ++i) perm[i] += vb;
  }
  for (std::int64_t i = vb + video_tokens(g); i < total_tokens(g); ++i) perm.push_back(i);
  return perm;
}

std::vector<std::int64_t> inverse_permutation(const std::vector<std::int64_t>& perm) {
  std::vector<std::int64_t> inverse(perm.size(), -1);
  for (std::size_t p = 0; p < perm.size(); ++p) {
    const std::int64_t target = perm[p];
    if (target < 0 || target >= static_cast<std::int64_t>(perm.size()) || inverse[target] != -1) {
      throw Error("perm", "not a permutation of 0.." + std::to_string(perm.size() - 1) +
                              " (position " + std::to_string(p) + ")");
    }
    inverse[target] = static_cast<std::int64_t>(p);
  }
  return inverse;
}

std::vector<TokenCoord> sequence_coords(const VideoGeometry& g) {
  const std::vector<std::int64_t> perm = token_permutation(g);
  const std::int64_t vb = video_begin(g);
  const std::int64_t nv = video_tokens(g);
  const std::int64_t per_frame = tokens_per_frame(g);
  std::vector<TokenCoord> coords(perm.size());
  for (std::size_t p = 0; p < perm.size(); ++p) {
    const std::int64_t native = perm[p] - vb;
    TokenCoord& c = coords[p];
    if (native < 0 || native >= nv) {
      c.text = true;
      continue;
    }
    c.frame = native / per_frame;
    c.y = (native % per_frame) / g.width;
    c.x = native % g.width;
  }
  return coords;
}

std::vector<BlockSpan> block_spans(const VideoGeometry& g) {
  const std::vector<TokenCoord> coords = sequence_coords(g);
  const std::int64_t total = static_cast<std::int64_t>(coords.size());
  const std::int64_t n = num_blocks(g);
  std::vector<BlockSpan> spans(static_cast<std::size_t>(n));
  for (std::int64_t b = 0; b < n; ++b) {
    BlockSpan& span = spans[b];
    span.begin = b * g.block_size;
    span.size = std::min<std::int64_t>(g.block_size, total - span.begin);
    for (std::int64_t p = span.begin; p < span.begin + span.size; ++p) {
      const TokenCoord& c = coords[p];
      if (c.text) {
        ++span.text_count;
        continue;
      }
      const std::int64_t s = spatial_index(g, c);
      span.frame_lo = span.frame_lo < 0 ? c.frame : std::min(span.frame_lo, c.frame);
      span.frame_hi = std::max(span.frame_hi, c.frame);
      if (!span.runs.empty()) {
        TokenRun& last = span.runs.back();
        if (last.begin + last.count == p && last.frame == c.frame &&
            last.spatial_begin + last.count == s) {
          ++last.count;
          continue;
        }
      }
      span.runs.push_back(TokenRun{p, c.frame, s, 1});
    }
  }
  return spans;
}

std::string to_string(TextPlacement p) {
  switch (p) {
    case TextPlacement::none: return "none";
    case TextPlacement::prefix: return "prefix";
    case TextPlacement::suffix: return "suffix";
  }
  return "?";
}

std::string to_string(TokenOrder o) { return o == TokenOrder::raster ? "raster" : "tiled3d"; }

TextPlacement parse_text_placement(const std::string& s) {
  if (s == "none") return TextPlacement::none;
  if (s == "prefix") return TextPlacement::prefix;
  if (s == "suffix") return TextPlacement::suffix;
  throw Error("geometry.text_placement", "\"" + s + "\": allowed values are none, prefix, suffix");
}

TokenOrder parse_token_order(const std::string& s) {
  if (s == "raster") return TokenOrder::raster;
  if (s == "tiled3d") return TokenOrder::tiled3d;
  throw Error("geometry.order", "\"" + s + "\": allowed values are raster, tiled3d");
}

}  // namespace dynamicrad
