// Pictures of block masks, like the paper's figures: one head's layout over the prior.
#pragma once

#include <cstdint>
#include <string>

#include "dynamicrad/layout.h"
#include "dynamicrad/prior.h"

namespace dynamicrad {

struct MaskPictureOptions {
  std::int64_t batch = 0;
  std::int64_t head = 0;
  int cell_pixels = 0;         // pixels per block side; 0 picks a size near 1024 pixels overall (above
                               // 4096 blocks several blocks share a pixel, drawn as the most important
                               // kind among them); an explicit size is capped at 16384 pixels overall
  bool frame_grid = true;      // thin lines at frame boundaries
};

// Colours: forced blocks dark, selected candidates blue (also any kept block outside the prior),
// candidates left out light grey, skipped white. Writes through a temporary file renamed into place; throws Error on bad options or I/O.
void write_mask_png(const std::string& path, const RadialPrior& prior, const BlockLayout& layout,
                    const MaskPictureOptions& options);

}  // namespace dynamicrad
