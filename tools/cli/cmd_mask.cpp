// `dynamicrad mask`: builds the radial prior and a selected block layout for a geometry on
// synthetic Q/K with the regime's drift, prints the mask's statistics and the time of each build
// step, and draws one head as a PNG.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <numeric>
#include <utility>

#include "commands.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/motion.h"
#include "dynamicrad/picture.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"
#include "dynamicrad/synthetic.h"
#include "engine_flags.h"
#include "output_path.h"
#include "report.h"

namespace dynamicrad::cli {
namespace {

// Synthetic tensors larger than this announce themselves on stderr (they take seconds to make).
constexpr std::int64_t kAnnounceBytes = std::int64_t{256} << 20;

// Without --preset: Wan2.1-1.3B at 480p.
VideoGeometry default_geometry() {
  VideoGeometry g;
  g.frames = 21;
  g.height = 30;
  g.width = 52;
  g.heads = 12;
  g.head_dim = 128;
  g.block_size = 128;
  return g;
}

FlagSet mask_flags() {
  std::vector<FlagSpec> specs = geometry_flags(default_geometry());
  for (FlagSpec& s : lut_flags()) specs.push_back(std::move(s));
  specs.push_back({"seed", "N", "seed of the synthetic Q/K/V", "1", {}});
  specs.push_back({"head", "H", "head to draw", "0", {}});
  specs.push_back({"png", "FILE", "picture of the drawn head's mask", "mask.png", {}});
  specs.push_back(
      {"cell-pixels", "N", "pixels per block side; 0 picks a picture near 1024 pixels", "0", {}});
  specs.push_back({"no-frame-grid", "", "draw no lines at frame boundaries", "", {}});
  return FlagSet(
      "dynamicrad mask",
      "Builds the radial prior and the selected block layout for a video geometry on\n"
      "synthetic Q/K (drift of the motion regime), prints density, sparsity, per-head and\n"
      "per-frame-distance statistics and the time of each build step, and draws one head.",
      std::move(specs));
}

void print_distance_table(const LayoutStats& stats) {
  Table table({"frame distance", "block pairs / head", "kept share"});
  for (const DistanceStats& d : stats.by_distance) {
    table.add({std::to_string(d.distance), count(d.total), share(d.kept_share)});
  }
  table.print(std::cout);
}

}  // namespace

int run_mask(const std::vector<std::string>& args) {
  FlagSet flags = mask_flags();
  flags.parse(args);
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  std::string label;
  const VideoGeometry geometry = geometry_from_flags(flags, &label);
  const std::int64_t head = flags.integer("head", 0, geometry.heads - 1);
  const auto seed = static_cast<std::uint64_t>(flags.integer("seed", 0, INT64_MAX));
  const int cell_pixels = static_cast<int>(flags.integer("cell-pixels", 0, 64));
  const std::string png_path = flags.text("png");
  const LutChoice choice = lut_choice_from_flags(flags);
  const SelectionMode mode = choice.entry.selection.mode;
  require_writable(png_path);  // before the synthetic data and the mask, which take a while

  SyntheticOptions synthetic;
  synthetic.drift = regime_drift(choice.regime);
  synthetic.seed = seed;
  synthetic.dtype = DType::bf16;  // half the memory of f32; pooling reads it as float
  const std::int64_t qkv_bytes = 3 * total_tokens(geometry) * geometry.heads * geometry.head_dim *
                                 static_cast<std::int64_t>(dtype_size(synthetic.dtype));
  if (qkv_bytes > kAnnounceBytes) {
    std::cerr << "dynamicrad: making synthetic Q/K/V (" << bytes(qkv_bytes) << ", bf16)...\n";
  }
  auto start = std::chrono::steady_clock::now();
  const SyntheticQkv qkv = make_synthetic_qkv(geometry, synthetic);
  const double synthetic_s = seconds_since(start);

  if (qkv_bytes > kAnnounceBytes) std::cerr << "dynamicrad: building the mask...\n";
  start = std::chrono::steady_clock::now();
  const RadialPrior prior = build_radial_prior(geometry, choice.entry.prior);
  const double prior_s = seconds_since(start);
  start = std::chrono::steady_clock::now();
  const PooledBlocks pooled = pool_blocks(qkv.q.view(), qkv.k.view(), geometry);
  const double pool_s = seconds_since(start);
  start = std::chrono::steady_clock::now();
  const BlockLayout layout = select_blocks(prior, pooled, choice.entry.selection);
  const double select_s = seconds_since(start);

  const LayoutStats stats = layout_stats(layout, &prior);
  const auto [min_head, max_head] =
      std::minmax_element(stats.head_sparsity.begin(), stats.head_sparsity.end());
  const double mean_head =
      std::accumulate(stats.head_sparsity.begin(), stats.head_sparsity.end(), 0.0) /
      static_cast<double>(std::max<std::size_t>(1, stats.head_sparsity.size()));

  MaskPictureOptions picture;
  picture.head = head;
  picture.cell_pixels = cell_pixels;
  picture.frame_grid = !flags.on("no-frame-grid");
  write_mask_png(png_path, prior, layout, picture);

  std::ostream& out = std::cout;
  out << "dynamicrad mask: " << label << ", regime " << to_string(choice.regime) << ", mode "
      << to_string(mode) << "\n\n";
  print_field(out, "geometry", describe(geometry));
  print_field(out, "tokens",
              count(total_tokens(geometry)) + " (" + count(video_tokens(geometry)) + " video + " +
                  count(geometry.text_tokens) + " text)");
  print_field(out, "blocks",
              count(prior.blocks) + " a side, " + count(prior.blocks * prior.blocks) +
                  " block pairs per head");
  print_field(out, "LUT row",
              choice.lut_source + ": " + to_string(choice.regime) + " / " + to_string(mode));
  print_field(out, "prior params", describe(choice.entry.prior));
  print_field(out, "selection params", describe(choice.entry.selection));
  print_field(out, "prior density",
              share(prior.density()) + " (forced " + count(prior.count(BlockKind::forced)) +
                  ", near " + count(prior.count(BlockKind::near)) + ", far " +
                  count(prior.count(BlockKind::far)) + " block pairs)");
  print_field(out, "layout sparsity",
              share(stats.sparsity) + " (density " + share(stats.density) + ", token density " +
                  share(stats.token_density) + ")");
  if (!stats.head_sparsity.empty()) {
    print_field(out, "head sparsity",
                "min " + share(*min_head) + ", mean " + share(mean_head) + ", max " +
                    share(*max_head) + " over " + count(geometry.heads) + " heads");
  }
  print_field(out, "fewest blocks a row", count(stats.min_row_blocks));
  print_field(
      out, "layout bytes",
      bytes(layout.bytes()) + " (" + count(layout.kept()) + " kept block pairs, all heads)");
  out << "\n  timings (one call each; synthetic data is not part of the mask build)\n";
  Table timings({"step", "time"});
  timings.add({"synthetic Q/K/V (bf16)", seconds(synthetic_s)});
  timings.add({"build_radial_prior", seconds(prior_s)});
  timings.add({"pool_blocks", seconds(pool_s)});
  timings.add({"select_blocks", seconds(select_s)});
  timings.add({"mask build total", seconds(prior_s + pool_s + select_s)});
  timings.print(out);
  if (!stats.by_distance.empty()) {
    out << "\n  by frame distance (video block pairs, smallest distance between the blocks' "
           "frames)\n";
    print_distance_table(stats);
  }
  out << "\n";
  print_field(out, "picture", png_path + " (batch 0, head " + std::to_string(head) + ")");
  return 0;
}

}  // namespace dynamicrad::cli
