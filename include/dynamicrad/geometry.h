// Video geometry: how the tokens of one attention call are laid out and cut into blocks.
//
// A sequence holds the video tokens of `frames` latent frames of `height` x `width` tokens each and,
// for joint-attention models (HunyuanVideo), `text_tokens` text tokens before (prefix) or after
// (suffix) them. The model's native token order is raster: frame-major, then row, then column.
// The 3D-tiled order permutes the video tokens so that each attention block covers a compact
// tile.t x tile.h x tile.w tile; full tiles come first (each exactly one block), the partial tiles at
// the right / bottom / last-frame edges follow in the same tile order. Text tokens never move.
//
// Blocks are consecutive runs of `block_size` positions of the (possibly permuted) sequence; the last
// block may be short. Everything downstream (prior, selection, layout, kernels) works on blocks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dynamicrad {

enum class TextPlacement { none, prefix, suffix };
enum class TokenOrder { raster, tiled3d };

// A 3D tile of tokens (frames x rows x columns).
struct Tile {
  int t = 0;
  int h = 0;
  int w = 0;
};

// The most attention heads a geometry may have (and the engine's batch x heads products stay far
// from int64 overflow with it).
constexpr std::int64_t kMaxHeads = 4096;

struct VideoGeometry {
  std::int64_t batch = 1;
  std::int64_t heads = 1;  // [1, kMaxHeads]
  std::int64_t head_dim = 64;
  std::int64_t frames = 1;   // latent frames
  std::int64_t height = 1;   // latent tokens per column of a frame (after patching)
  std::int64_t width = 1;    // latent tokens per row of a frame
  std::int64_t text_tokens = 0;
  TextPlacement text_placement = TextPlacement::none;  // must be none exactly when text_tokens == 0
  int block_size = 128;                                // 32, 64 or 128
  TokenOrder order = TokenOrder::raster;
  Tile tile{};  // tiled3d only; {0,0,0} picks default_tile(block_size); t*h*w must equal block_size
};

// Throws Error naming the field and its allowed range.
void validate(const VideoGeometry& geometry);

// Throws Error(field) when `batch` elements of the geometry would not fit the library's 64-bit
// sizes: batch x tokens x heads x head_dim values, batch x heads x blocks^2 block pairs.
void require_batch_fits(const VideoGeometry& geometry, std::int64_t batch, const std::string& field);

std::int64_t tokens_per_frame(const VideoGeometry& g);  // height * width
std::int64_t video_tokens(const VideoGeometry& g);      // frames * height * width
std::int64_t total_tokens(const VideoGeometry& g);      // video + text
std::int64_t num_blocks(const VideoGeometry& g);        // ceil(total / block_size)
std::int64_t video_begin(const VideoGeometry& g);       // sequence position of the first video token

// 2x8x8 for block 128, 1x8x8 for 64, 1x4x8 for 32.
Tile default_tile(int block_size);
// The tile the geometry uses (its own or the default).
Tile effective_tile(const VideoGeometry& g);

// What a sequence position holds.
struct TokenCoord {
  bool text = false;
  std::int64_t frame = -1;  // video tokens only
  std::int64_t y = -1;
  std::int64_t x = -1;
};

// Raster index of a video token inside its frame: y * width + x.
inline std::int64_t spatial_index(const VideoGeometry& g, const TokenCoord& c) {
  return c.y * g.width + c.x;
}

// perm[p] = native (raster) position of the token at sequence position p in g.order.
// Gathering native tokens with perm gives the sequence; scattering back uses the inverse.
std::vector<std::int64_t> token_permutation(const VideoGeometry& g);
std::vector<std::int64_t> inverse_permutation(const std::vector<std::int64_t>& perm);

// Coordinates of every sequence position (length total_tokens(g)), in g.order.
std::vector<TokenCoord> sequence_coords(const VideoGeometry& g);

// A maximal run of sequence positions [begin, begin + count) holding video tokens of one frame with
// consecutive spatial indices [spatial_begin, spatial_begin + count). Blocks are described by runs so
// that the radial prior can be computed per block without any token-level mask.
struct TokenRun {
  std::int64_t begin = 0;
  std::int64_t frame = 0;
  std::int64_t spatial_begin = 0;
  std::int64_t count = 0;
};

struct BlockSpan {
  std::int64_t begin = 0;       // first sequence position
  std::int64_t size = 0;        // positions in the block (block_size, or fewer for the last block)
  std::int64_t text_count = 0;  // text tokens in the block
  std::int64_t frame_lo = -1;   // smallest / largest video frame in the block, -1 when text only
  std::int64_t frame_hi = -1;
  std::vector<TokenRun> runs;   // video tokens, in sequence order
};

// One BlockSpan per block, length num_blocks(g).
std::vector<BlockSpan> block_spans(const VideoGeometry& g);

std::string to_string(TextPlacement p);
std::string to_string(TokenOrder o);
TextPlacement parse_text_placement(const std::string& s);  // "none", "prefix", "suffix"
TokenOrder parse_token_order(const std::string& s);        // "raster", "tiled3d"

}  // namespace dynamicrad
