// RGB PNG writer (rgb_png.h).
#include "io/rgb_png.h"

#include <png.h>

#include <csetjmp>
#include <cstdio>

#include "dynamicrad/error.h"
#include "io/atomic_file.h"

namespace dynamicrad::detail {
namespace {

struct Failure {
  char message[256];
};

// libpng's error callback must not return: record the message and jump back to the setjmp.
void on_error(png_structp png, png_const_charp message) {
  auto* failure = static_cast<Failure*>(png_get_error_ptr(png));
  std::snprintf(failure->message, sizeof failure->message, "%s", message ? message : "libpng error");
  std::longjmp(png_jmpbuf(png), 1);
}

void on_warning(png_structp, png_const_charp) {}

// Only trivially destructible locals live here, so the longjmp skips no destructor.
bool encode(std::FILE* file, png_bytep* rows, png_uint_32 width, png_uint_32 height, Failure* failure) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, failure, on_error, on_warning);
  if (png == nullptr) {
    std::snprintf(failure->message, sizeof failure->message, "cannot create the PNG writer");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    std::snprintf(failure->message, sizeof failure->message, "cannot create the PNG header");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_init_io(png, file);
  png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace

void write_rgb_png(const std::string& path, const std::vector<std::uint8_t>& pixels, int width,
                   int height) {
  if (width < 1 || height < 1 ||
      pixels.size() != static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3) {
    throw Error(path, "image of " + std::to_string(width) + " x " + std::to_string(height) +
                          " pixels does not match its buffer");
  }
  std::vector<png_bytep> rows(static_cast<std::size_t>(height));
  for (int y = 0; y < height; ++y) {
    rows[y] = const_cast<png_bytep>(pixels.data() + static_cast<std::size_t>(y) * width * 3);
  }
  write_file(path, [&](std::FILE* file) -> std::string {
    Failure failure{};
    const bool encoded = encode(file, rows.data(), static_cast<png_uint_32>(width),
                                static_cast<png_uint_32>(height), &failure);
    return encoded ? "" : failure.message;
  });
}

}  // namespace dynamicrad::detail
