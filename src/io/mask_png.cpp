// Mask pictures (picture.h): one (batch, head) of a block layout drawn over the radial prior, as an
// RGB PNG with one square cell per block pair (query blocks down, key blocks across).
//
// Large layouts are drawn at one pixel per block up to kMaxAutoSide pixels; beyond that several
// blocks share a pixel, which shows the most important class among them (forced > selected >
// left out > skipped), so no kept block ever disappears from the picture.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "dynamicrad/error.h"
#include "dynamicrad/picture.h"
#include "io/rgb_png.h"

namespace dynamicrad {
namespace {

// Classes of a block pair, in ascending importance (a shared pixel shows the largest).
enum class Cell : std::uint8_t { skipped = 0, left_out = 1, selected = 2, forced = 3 };

struct Rgb {
  std::uint8_t r, g, b;
};

constexpr Rgb kForcedColour{32, 32, 32};      // dark: always kept by the prior
constexpr Rgb kSelectedColour{37, 99, 235};   // blue: candidate kept by selection
constexpr Rgb kLeftOutColour{210, 210, 210};  // light grey: candidate selection left out
constexpr Rgb kSkippedColour{255, 255, 255};  // white: outside the prior
constexpr Rgb kFrameLineColour{220, 38, 38};  // red, blended half over the cells it crosses

constexpr std::int64_t kTargetSide = 1024;   // automatic pictures aim at this many pixels a side
constexpr std::int64_t kMaxAutoSide = 4096;  // and never exceed this
constexpr std::int64_t kMaxSide = 16384;     // an explicit cell_pixels may not exceed this either

Rgb colour_of(Cell cell) {
  switch (cell) {
    case Cell::forced:
      return kForcedColour;
    case Cell::selected:
      return kSelectedColour;
    case Cell::left_out:
      return kLeftOutColour;
    case Cell::skipped:
      return kSkippedColour;
  }
  return kSkippedColour;
}

// How block pairs map to pixels: `cells` cells a side (<= blocks; a cell covers the blocks
// b with b * cells / blocks equal to its index), each `cell_pixels` pixels wide.
struct PictureScale {
  std::int64_t blocks = 0;
  std::int64_t cells = 0;
  std::int64_t cell_pixels = 0;

  std::int64_t side() const { return cells * cell_pixels; }
  std::int64_t cell_of(std::int64_t block) const { return block * cells / blocks; }
};

PictureScale choose_scale(std::int64_t blocks, int cell_pixels) {
  PictureScale s;
  s.blocks = blocks;
  if (cell_pixels < 0) {
    throw Error("picture.cell_pixels",
                std::to_string(cell_pixels) + ": allowed values are 0 (automatic) or >= 1");
  }
  if (cell_pixels > 0) {
    s.cells = blocks;
    s.cell_pixels = cell_pixels;
    if (s.side() > kMaxSide) {
      throw Error("picture.cell_pixels",
                  std::to_string(cell_pixels) + ": " + std::to_string(blocks) +
                      " blocks would give " + std::to_string(s.side()) +
                      " pixels a side; allowed at most " + std::to_string(kMaxSide) +
                      " (use 0 for an automatic size)");
    }
    return s;
  }
  s.cells = std::min(blocks, kMaxAutoSide);
  s.cell_pixels = std::max<std::int64_t>(1, (kTargetSide + blocks / 2) / blocks);
  return s;
}

void check_inputs(const RadialPrior& prior, const BlockLayout& layout,
                  const MaskPictureOptions& options) {
  if (prior.blocks <= 0) {
    throw Error("prior.blocks",
                std::to_string(prior.blocks) + ": a picture needs at least one block");
  }
  const auto blocks = static_cast<std::size_t>(prior.blocks);
  if (prior.row_offsets.size() != blocks + 1 || prior.kinds.size() != prior.col_indices.size() ||
      prior.frame_lo.size() != blocks || prior.frame_hi.size() != blocks ||
      prior.row_offsets.back() != static_cast<std::int64_t>(prior.col_indices.size())) {
    throw Error("prior",
                "inconsistent array sizes for " + std::to_string(prior.blocks) + " blocks");
  }
  validate(layout);
  if (layout.blocks != prior.blocks || layout.block_size != prior.geometry.block_size) {
    throw Error("layout.blocks", std::to_string(layout.blocks) + " blocks of " +
                                     std::to_string(layout.block_size) + ", but the prior has " +
                                     std::to_string(prior.blocks) + " blocks of " +
                                     std::to_string(prior.geometry.block_size) +
                                     ": the layout and the prior must come from one geometry");
  }
  if (options.batch < 0 || options.batch >= layout.batch) {
    throw Error("picture.batch", std::to_string(options.batch) + ": allowed range [0, " +
                                     std::to_string(layout.batch - 1) + "]");
  }
  if (options.head < 0 || options.head >= layout.heads) {
    throw Error("picture.head", std::to_string(options.head) + ": allowed range [0, " +
                                    std::to_string(layout.heads - 1) + "]");
  }
}

// Classifies every block pair of one (batch, head) into the cell grid.
std::vector<Cell> classify(const RadialPrior& prior, const BlockLayout& layout,
                           const MaskPictureOptions& options, const PictureScale& scale) {
  std::vector<Cell> grid(static_cast<std::size_t>(scale.cells * scale.cells), Cell::skipped);
  auto mark = [&](std::int64_t q, std::int64_t c, Cell cell) {
    Cell& slot = grid[static_cast<std::size_t>(scale.cell_of(q) * scale.cells + scale.cell_of(c))];
    slot = std::max(slot, cell);
  };
  for (std::int64_t q = 0; q < prior.blocks; ++q) {
    const std::int64_t row = layout.row(options.batch, options.head, q);
    std::int64_t l = layout.row_offsets[row];
    const std::int64_t l_end = layout.row_offsets[row + 1];
    std::int64_t p = prior.row_offsets[q];
    const std::int64_t p_end = prior.row_offsets[q + 1];
    // Merge the two ascending column lists of this row.
    while (l < l_end || p < p_end) {
      const std::int64_t lc = l < l_end ? layout.col_indices[l] : INT64_MAX;
      const std::int64_t pc = p < p_end ? prior.col_indices[p] : INT64_MAX;
      if (lc == pc) {
        mark(q, lc, prior.kinds[p] == BlockKind::forced ? Cell::forced : Cell::selected);
        ++l;
        ++p;
      } else if (lc < pc) {
        mark(q, lc, Cell::selected);  // kept outside the prior (e.g. a full layout)
        ++l;
      } else {
        mark(q, pc, Cell::left_out);
        ++p;
      }
    }
  }
  return grid;
}

// Pixel offsets of frame-boundary lines: before block b whenever its last frame differs from the
// previous block's (one line per boundary, also between text and video). None when the lines would
// cover more than a third of the picture.
std::vector<std::int64_t> frame_lines(const RadialPrior& prior, const PictureScale& scale) {
  std::vector<std::int64_t> lines;
  for (std::int64_t b = 1; b < prior.blocks; ++b) {
    if (prior.frame_hi[b] == prior.frame_hi[b - 1]) continue;
    const std::int64_t at = scale.cell_of(b) * scale.cell_pixels;
    if (lines.empty() || lines.back() != at) lines.push_back(at);
  }
  if (static_cast<std::int64_t>(lines.size()) * 3 > scale.side()) lines.clear();
  return lines;
}

std::vector<std::uint8_t> render(const std::vector<Cell>& grid, const PictureScale& scale,
                                 const std::vector<std::int64_t>& lines) {
  const std::int64_t side = scale.side();
  std::vector<std::uint8_t> pixels(static_cast<std::size_t>(side * side * 3));
  for (std::int64_t y = 0; y < side; ++y) {
    std::uint8_t* out = pixels.data() + y * side * 3;
    const std::int64_t cy = y / scale.cell_pixels;
    for (std::int64_t x = 0; x < side; ++x) {
      const Rgb c =
          colour_of(grid[static_cast<std::size_t>(cy * scale.cells + x / scale.cell_pixels)]);
      out[3 * x] = c.r;
      out[3 * x + 1] = c.g;
      out[3 * x + 2] = c.b;
    }
  }
  auto blend = [&](std::int64_t x, std::int64_t y) {
    std::uint8_t* px = pixels.data() + (y * side + x) * 3;
    px[0] = static_cast<std::uint8_t>((px[0] + kFrameLineColour.r) / 2);
    px[1] = static_cast<std::uint8_t>((px[1] + kFrameLineColour.g) / 2);
    px[2] = static_cast<std::uint8_t>((px[2] + kFrameLineColour.b) / 2);
  };
  for (std::int64_t at : lines) {
    for (std::int64_t i = 0; i < side; ++i) {
      blend(at, i);               // vertical line: key-frame boundary
      if (i != at) blend(i, at);  // horizontal line: query-frame boundary (crossing blended once)
    }
  }
  return pixels;
}

}  // namespace

void write_mask_png(const std::string& path, const RadialPrior& prior, const BlockLayout& layout,
                    const MaskPictureOptions& options) {
  check_inputs(prior, layout, options);
  const PictureScale scale = choose_scale(prior.blocks, options.cell_pixels);
  const std::vector<Cell> grid = classify(prior, layout, options, scale);
  const std::vector<std::int64_t> lines =
      options.frame_grid ? frame_lines(prior, scale) : std::vector<std::int64_t>{};
  std::vector<std::uint8_t> pixels = render(grid, scale, lines);
  detail::write_rgb_png(path, pixels, static_cast<int>(scale.side()), static_cast<int>(scale.side()));
}

}  // namespace dynamicrad
