// Writing an 8-bit RGB image as PNG through libpng, the way atomic_file.h writes every output file
// (a temporary renamed over a regular file, so a failure leaves no partial file; links followed;
// FIFOs and devices written in place).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dynamicrad::detail {

// pixels: [height, width, 3] row-major. Throws Error naming the path on failure.
void write_rgb_png(const std::string& path, const std::vector<std::uint8_t>& pixels, int width,
                   int height);

}  // namespace dynamicrad::detail
