// Mask pictures (picture.h): the PNG's size, the colour class of every block pair read back with
// libpng, frame-boundary lines, and errors that leave no file behind.
#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <iterator>
#include <string>
#include <vector>

#include "dynamicrad/error.h"
#include "dynamicrad/geometry.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/picture.h"
#include "dynamicrad/prior.h"
#include "fifo_support.h"
#include "writer_support.h"

namespace dynamicrad {
namespace {

namespace fs = std::filesystem;

struct Image {
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::vector<std::uint8_t> rgb;

  const std::uint8_t* at(std::int64_t x, std::int64_t y) const { return &rgb[(y * width + x) * 3]; }
};

Image read_png(const fs::path& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  Image out;
  if (!png_image_begin_read_from_file(&image, path.c_str())) {
    ADD_FAILURE() << "cannot read " << path << ": " << image.message;
    return out;
  }
  image.format = PNG_FORMAT_RGB;
  out.width = image.width;
  out.height = image.height;
  out.rgb.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, out.rgb.data(), 0, nullptr)) {
    ADD_FAILURE() << "cannot decode " << path << ": " << image.message;
  }
  return out;
}

fs::path scratch_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() /
                       ("dynamicrad_test_picture_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// The picture of `prior` with every candidate kept (cell_pixels 0: the automatic size), read back.
Image draw_prior(const RadialPrior& prior, int cell_pixels, const std::string& name) {
  const fs::path dir = scratch_dir(name);
  MaskPictureOptions options;
  options.cell_pixels = cell_pixels;
  write_mask_png((dir / "picture.png").string(), prior, layout_from_prior(prior, 1, 1), options);
  Image image = read_png(dir / "picture.png");
  fs::remove_all(dir);
  return image;
}

// A frame-line pixel has more red than green; no cell colour does (grey, white and dark are
// neutral, blue has more green than red).
bool reddish(const std::uint8_t* p) { return p[0] > p[1] + 30; }

// 8 frames of 8 x 8 tokens, block 32: 16 blocks, two per frame.
VideoGeometry small_geometry() {
  VideoGeometry g;
  g.frames = 8;
  g.height = 8;
  g.width = 8;
  g.heads = 2;
  g.head_dim = 16;
  g.block_size = 32;
  return g;
}

enum class Expect { forced, selected, left_out, skipped };

// Keeps the forced blocks and, in head `h`, the first h + 1 candidates of every row, so that every
// colour class appears and the two heads differ.
BlockLayout partial_layout(const RadialPrior& prior, std::int64_t heads) {
  BlockLayout l;
  l.batch = 1;
  l.heads = heads;
  l.tokens = total_tokens(prior.geometry);
  l.block_size = prior.geometry.block_size;
  l.blocks = prior.blocks;
  l.row_offsets.push_back(0);
  for (std::int64_t h = 0; h < heads; ++h) {
    for (std::int64_t q = 0; q < prior.blocks; ++q) {
      std::int64_t candidates = 0;
      for (std::int64_t i = prior.row_offsets[q]; i < prior.row_offsets[q + 1]; ++i) {
        const bool forced = prior.kinds[i] == BlockKind::forced;
        if (forced || candidates++ <= h) l.col_indices.push_back(prior.col_indices[i]);
      }
      l.row_offsets.push_back(static_cast<std::int64_t>(l.col_indices.size()));
    }
  }
  validate(l);
  return l;
}

// expected[q * blocks + c] for one head of partial_layout().
std::vector<Expect> expected_classes(const RadialPrior& prior, std::int64_t head) {
  std::vector<Expect> e(static_cast<std::size_t>(prior.blocks * prior.blocks), Expect::skipped);
  for (std::int64_t q = 0; q < prior.blocks; ++q) {
    std::int64_t candidates = 0;
    for (std::int64_t i = prior.row_offsets[q]; i < prior.row_offsets[q + 1]; ++i) {
      Expect& slot = e[q * prior.blocks + prior.col_indices[i]];
      if (prior.kinds[i] == BlockKind::forced) {
        slot = Expect::forced;
      } else {
        slot = candidates++ <= head ? Expect::selected : Expect::left_out;
      }
    }
  }
  return e;
}

// Colour classes by shape, not exact values: dark, blue, light grey, white.
bool looks(Expect kind, const std::uint8_t* p) {
  const int r = p[0], g = p[1], b = p[2];
  switch (kind) {
    case Expect::forced:
      return r < 80 && g < 80 && b < 80;
    case Expect::selected:
      return b > r + 80 && b > g + 60;
    case Expect::left_out:
      return r == g && g == b && r >= 160 && r < 250;
    case Expect::skipped:
      return r == 255 && g == 255 && b == 255;
  }
  return false;
}

TEST(Picture, EveryCellHasTheColourOfItsClass) {
  const RadialPrior prior = build_radial_prior(small_geometry(), RadialPriorParams{});
  const BlockLayout layout = partial_layout(prior, 2);
  const fs::path dir = scratch_dir("colours");
  for (std::int64_t head = 0; head < 2; ++head) {
    SCOPED_TRACE("head " + std::to_string(head));
    MaskPictureOptions options;
    options.head = head;
    options.cell_pixels = 5;
    options.frame_grid = false;
    const fs::path path = dir / ("head" + std::to_string(head) + ".png");
    write_mask_png(path.string(), prior, layout, options);
    const Image image = read_png(path);
    ASSERT_EQ(image.width, prior.blocks * 5);
    ASSERT_EQ(image.height, prior.blocks * 5);
    const std::vector<Expect> expected = expected_classes(prior, head);
    int seen[4] = {0, 0, 0, 0};
    for (std::int64_t q = 0; q < prior.blocks; ++q) {
      for (std::int64_t c = 0; c < prior.blocks; ++c) {
        const Expect kind = expected[q * prior.blocks + c];
        ++seen[static_cast<int>(kind)];
        // Every pixel of the cell, not just its centre.
        for (int dy = 0; dy < 5; ++dy) {
          for (int dx = 0; dx < 5; ++dx) {
            const std::uint8_t* p = image.at(c * 5 + dx, q * 5 + dy);
            ASSERT_TRUE(looks(kind, p))
                << "cell (" << q << ", " << c << ") class " << static_cast<int>(kind)
                << " has colour " << int(p[0]) << "," << int(p[1]) << "," << int(p[2]);
          }
        }
      }
    }
    for (int k = 0; k < 4; ++k) EXPECT_GT(seen[k], 0) << "class " << k << " never drawn";
  }
  EXPECT_TRUE(dr_test::temporaries(dir).empty());
  fs::remove_all(dir);
}

TEST(Picture, KeptBlocksOutsideThePriorAreSelected) {
  const RadialPrior prior = build_radial_prior(small_geometry(), RadialPriorParams{});
  ASSERT_LT(prior.density(), 1.0);
  const BlockLayout full =
      full_layout(1, 1, total_tokens(prior.geometry), prior.geometry.block_size);
  const fs::path dir = scratch_dir("full");
  MaskPictureOptions options;
  options.cell_pixels = 2;
  options.frame_grid = false;
  write_mask_png((dir / "full.png").string(), prior, full, options);
  const Image image = read_png(dir / "full.png");
  for (std::int64_t q = 0; q < prior.blocks; ++q) {
    for (std::int64_t c = 0; c < prior.blocks; ++c) {
      const std::uint8_t* p = image.at(c * 2, q * 2);
      EXPECT_TRUE(looks(Expect::forced, p) || looks(Expect::selected, p)) << q << ", " << c;
    }
  }
  fs::remove_all(dir);
}

TEST(Picture, FrameGridDrawsLinesAtFrameBoundaries) {
  const RadialPrior prior = build_radial_prior(small_geometry(), RadialPriorParams{});
  const Image image = draw_prior(prior, 6, "grid");
  // Two blocks per frame: frame boundaries before blocks 2, 4, ..., never before odd blocks.
  const std::int64_t y = 3 * 6 + 3;  // inside query block 3
  for (std::int64_t b = 1; b < prior.blocks; ++b) {
    EXPECT_EQ(reddish(image.at(b * 6, y)), b % 2 == 0) << "key block " << b;
    EXPECT_FALSE(reddish(image.at(b * 6 + 3, y))) << "inside key block " << b;
  }
}

TEST(Picture, AutomaticSizeIsNear1024Pixels) {
  const RadialPrior prior = build_radial_prior(small_geometry(), RadialPriorParams{});
  const Image image = draw_prior(prior, 0, "auto");
  EXPECT_EQ(image.width, image.height);
  EXPECT_EQ(image.width % prior.blocks, 0u);
  EXPECT_GE(image.width, 768u);
  EXPECT_LE(image.width, 1280u);
}

void expect_error(const RadialPrior& prior, const BlockLayout& layout,
                  const MaskPictureOptions& options, const std::string& path,
                  const std::string& mention) {
  try {
    write_mask_png(path, prior, layout, options);
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path));
  const fs::path folder = fs::path(path).parent_path();
  if (fs::is_directory(folder)) EXPECT_TRUE(dr_test::temporaries(folder).empty());
}

TEST(PictureErrors, BadOptionsNameTheField) {
  const RadialPrior prior = build_radial_prior(small_geometry(), RadialPriorParams{});
  const BlockLayout layout = layout_from_prior(prior, 1, 2);
  const fs::path dir = scratch_dir("options");
  const std::string path = (dir / "x.png").string();
  MaskPictureOptions options;
  options.head = 2;
  expect_error(prior, layout, options, path, "picture.head");
  options.head = -1;
  expect_error(prior, layout, options, path, "allowed range [0, 1]");
  options = MaskPictureOptions{};
  options.batch = 1;
  expect_error(prior, layout, options, path, "picture.batch");
  options = MaskPictureOptions{};
  options.cell_pixels = -3;
  expect_error(prior, layout, options, path, "picture.cell_pixels");
  options.cell_pixels = 100000;
  expect_error(prior, layout, options, path, "picture.cell_pixels");
  fs::remove_all(dir);
}

TEST(PictureErrors, LayoutFromAnotherGeometry) {
  const RadialPrior prior = build_radial_prior(small_geometry(), RadialPriorParams{});
  VideoGeometry other = small_geometry();
  other.frames = 4;
  const BlockLayout layout =
      layout_from_prior(build_radial_prior(other, RadialPriorParams{}), 1, 1);
  const fs::path dir = scratch_dir("mismatch");
  expect_error(prior, layout, MaskPictureOptions{}, (dir / "x.png").string(), "layout.blocks");
  fs::remove_all(dir);
}

TEST(PictureErrors, UnwritablePathLeavesNoFile) {
  const RadialPrior prior = build_radial_prior(small_geometry(), RadialPriorParams{});
  const BlockLayout layout = layout_from_prior(prior, 1, 1);
  const fs::path dir = scratch_dir("unwritable");
  // A missing directory: the temporary cannot be created.
  expect_error(prior, layout, MaskPictureOptions{}, (dir / "missing" / "x.png").string(),
               "cannot open");
  // An existing directory as the target: refused before anything is written.
  fs::create_directories(dir / "target.png");
  try {
    write_mask_png((dir / "target.png").string(), prior, layout, MaskPictureOptions{});
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target.png"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_directory(dir / "target.png"));
  EXPECT_TRUE(dr_test::temporaries(dir).empty());
  fs::remove_all(dir);
}


TEST(PictureFiles, ASymbolicLinkIsFollowedAndAFifoWrittenInPlace) {
  const RadialPrior prior = build_radial_prior(small_geometry(), RadialPriorParams{});
  const BlockLayout layout = layout_from_prior(prior, 1, 1);
  MaskPictureOptions options;
  options.cell_pixels = 2;
  const fs::path dir = scratch_dir("links");
  fs::create_symlink("real.png", dir / "link.png");
  write_mask_png((dir / "link.png").string(), prior, layout, options);
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(dir / "link.png")));
  EXPECT_EQ(read_png(dir / "real.png").width, prior.blocks * 2);

  const fs::path fifo = dir / "pipe.png";
  const std::string bytes = testing::read_fifo_while(
      fifo, [&] { write_mask_png(fifo.string(), prior, layout, options); });
  EXPECT_EQ(bytes.substr(0, 4), "\x89PNG");
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 3)
      << "link.png, real.png, pipe.png and nothing else";
  fs::remove_all(dir);
}

TEST(Picture, AutomaticCellSizeRoundsToTheNearestPixel) {
  // 12 frames of two blocks: 24 blocks; 1024 / 24 = 42.7, so 43 pixels a cell (1032 a side).
  VideoGeometry g = small_geometry();
  g.frames = 12;
  const RadialPrior prior = build_radial_prior(g, RadialPriorParams{});
  ASSERT_EQ(prior.blocks, 24);
  const Image image = draw_prior(prior, 0, "rounding");
  EXPECT_EQ(image.width, 24u * 43u);
  EXPECT_EQ(image.height, 24u * 43u);
}

TEST(Picture, FrameLinesFollowTheLastFrameOfBlocksThatSpanFrames) {
  // Frames of 6 x 8 = 48 tokens and blocks of 32: blocks 1, 4, 7 span two frames.
  VideoGeometry g = small_geometry();
  g.frames = 6;
  g.height = 6;
  const RadialPrior prior = build_radial_prior(g, RadialPriorParams{});
  const Image image = draw_prior(prior, 6, "spanning");
  int lines = 0;
  for (std::int64_t b = 1; b < prior.blocks; ++b) {
    const bool boundary = prior.frame_hi[b] != prior.frame_hi[b - 1];
    lines += boundary ? 1 : 0;
    // A pixel of the vertical line, away from every horizontal one.
    EXPECT_EQ(reddish(image.at(b * 6, 3)), boundary) << "key block " << b;
  }
  EXPECT_GT(lines, 0);
  bool lo_differs = false;  // the geometry tells frame_lo from frame_hi
  for (std::int64_t b = 1; b < prior.blocks; ++b) {
    lo_differs = lo_differs || ((prior.frame_lo[b] != prior.frame_lo[b - 1]) !=
                                (prior.frame_hi[b] != prior.frame_hi[b - 1]));
  }
  EXPECT_TRUE(lo_differs);
}

TEST(Picture, FrameLinesCoveringExactlyAThirdAreStillDrawn) {
  // 3 frames of two blocks at one pixel a block: 2 lines on a 6-pixel side, exactly a third.
  VideoGeometry g = small_geometry();
  g.frames = 3;
  const RadialPrior prior = build_radial_prior(g, RadialPriorParams{});
  ASSERT_EQ(prior.blocks, 6);
  const Image image = draw_prior(prior, 1, "third");
  EXPECT_TRUE(reddish(image.at(2, 0)));
  EXPECT_TRUE(reddish(image.at(4, 5)));
  EXPECT_FALSE(reddish(image.at(1, 0)));
}

TEST(Picture, LinesCrossingAreBlendedOnce) {
  const Image image = draw_prior(build_radial_prior(small_geometry(), RadialPriorParams{}), 6, "crossing");
  // (12, 12) lies on both lines before block 2; (12, 13), in the same cell, only on the vertical one.
  const std::uint8_t* crossing = image.at(12, 12);
  const std::uint8_t* vertical = image.at(12, 13);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(int(crossing[k]), int(vertical[k])) << "channel " << k;
}

}  // namespace
}  // namespace dynamicrad
