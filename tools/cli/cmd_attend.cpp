// `dynamicrad attend`: runs attention on synthetic Q/K/V four ways on the CPU (the double-precision
// dense reference, the fp32 block-sparse backend with every block, with the radial prior alone and
// with the selected layout) and prints each path's error against the reference and its time.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <sstream>
#include <utility>
#include <vector>

#include "commands.h"
#include "dynamicrad/attention.h"
#include "dynamicrad/layout.h"
#include "dynamicrad/metrics.h"
#include "dynamicrad/motion.h"
#include "dynamicrad/prior.h"
#include "dynamicrad/select.h"
#include "dynamicrad/synthetic.h"
#include "engine_flags.h"
#include "report.h"

namespace dynamicrad::cli {
namespace {

// tokens^2 * batch * heads * head_dim above which the dense paths take about a second.
constexpr double kAnnounceWork = 2e9;

// Small enough for the double-precision reference to take about a second on two cores.
VideoGeometry default_geometry() {
  VideoGeometry g;
  g.frames = 8;
  g.height = 16;
  g.width = 24;
  g.heads = 4;
  g.head_dim = 64;
  g.block_size = 64;
  return g;
}

FlagSet attend_flags() {
  std::vector<FlagSpec> specs = geometry_flags(default_geometry());
  for (FlagSpec& s : lut_flags()) specs.push_back(std::move(s));
  specs.push_back({"seed", "N", "seed of the synthetic Q/K/V", "1", {}});
  specs.push_back({"threads", "N", "CPU worker threads; 0 uses every hardware thread", "0", {}});
  specs.push_back({"repeats", "N", "runs of each fp32 path; the median is reported", "3", {}});
  specs.push_back({"recall-max-tokens",
                   "N",
                   "measure the exact attention-mass recall only up to this many tokens",
                   "8192",
                   {}});
  specs.push_back({"reference-max-tokens",
                   "N",
                   "refuse geometries with more tokens: the double-precision dense reference grows with "
                   "tokens^2 (a full-size preset takes hours on a CPU)",
                   "16384",
                   {}});
  return FlagSet(
      "dynamicrad attend",
      "Runs attention on synthetic Q/K/V (f32, drift of the motion regime) with the dense\n"
      "double-precision reference and with the CPU block-sparse backend (every block, the\n"
      "radial prior alone, the selected layout); prints sparsity, relative L2 error against\n"
      "the reference, attention-mass recall and time.",
      std::move(specs));
}

// Median wall time of `repeats` runs of a planned backend.
double time_backend(const AttentionBackend& backend, const AttentionArgs& args, int repeats) {
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    backend.run(args);
    times.push_back(seconds_since(start));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct PathResult {
  std::string name;
  double sparsity = 0.0;
  double error = 0.0;
  double time = 0.0;
};

}  // namespace

int run_attend(const std::vector<std::string>& args) {
  FlagSet flags = attend_flags();
  flags.parse(args);
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  std::string label;
  const VideoGeometry geometry = geometry_from_flags(flags, &label);
  const auto seed = static_cast<std::uint64_t>(flags.integer("seed", 0, INT64_MAX));
  const int threads = static_cast<int>(flags.integer("threads", 0, 1024));
  const int repeats = static_cast<int>(flags.integer("repeats", 1, 1000));
  const std::int64_t recall_max = flags.integer("recall-max-tokens", 0, INT64_MAX);
  const std::int64_t reference_max = flags.integer("reference-max-tokens", 1, INT64_MAX);
  const LutChoice choice = lut_choice_from_flags(flags);
  if (total_tokens(geometry) > reference_max) {
    const double multiply_adds = 2.0 * static_cast<double>(total_tokens(geometry)) *
                                 static_cast<double>(total_tokens(geometry)) *
                                 static_cast<double>(geometry.heads * geometry.head_dim);
    std::ostringstream work;
    work.precision(2);
    work << multiply_adds;
    throw UsageError("--reference-max-tokens = " + std::to_string(reference_max) + ": the geometry has " +
                     std::to_string(total_tokens(geometry)) + " tokens, and the dense reference would take about " +
                     work.str() + " double multiply-adds (hours on a CPU); raise --reference-max-tokens to run it "
                     "anyway, or see the layout alone with `dynamicrad mask`");
  }

  SyntheticOptions synthetic;
  synthetic.drift = regime_drift(choice.regime);
  synthetic.seed = seed;
  synthetic.dtype = DType::f32;
  const SyntheticQkv qkv = make_synthetic_qkv(geometry, synthetic);

  auto start = std::chrono::steady_clock::now();
  const RadialPrior prior = build_radial_prior(geometry, choice.entry.prior);
  const PooledBlocks pooled = pool_blocks(qkv.q.view(), qkv.k.view(), geometry);
  BlockLayout selected = select_blocks(prior, pooled, choice.entry.selection);
  const double mask_s = seconds_since(start);
  BlockLayout prior_only = layout_from_prior(prior, geometry.batch, geometry.heads);
  const double selected_sparsity = layout_stats(selected, nullptr).sparsity;
  const double prior_sparsity = layout_stats(prior_only, nullptr).sparsity;

  AttentionOptions options;
  options.threads = threads;
  const Shape shape = qkv.q.shape();
  HostTensor reference(DType::f32, shape);
  HostTensor output(DType::f32, shape);
  auto args_for = [&](HostTensor& out) {
    return AttentionArgs{qkv.q.view(), qkv.k.view(), qkv.v.view(), out.mutable_view(), nullptr};
  };

  // Announce the slow steps only when they are slow (about a second or more).
  const double pair_work = static_cast<double>(shape.tokens) * static_cast<double>(shape.tokens) *
                           static_cast<double>(shape.batch * shape.heads * shape.head_dim);
  const bool announce = pair_work > kAnnounceWork;
  if (announce) std::cerr << "dynamicrad: dense reference attention (double)...\n";
  start = std::chrono::steady_clock::now();
  attention_reference(args_for(reference), options);
  const double reference_s = seconds_since(start);

  std::vector<PathResult> results;
  auto run_path = [&](const std::string& name, BlockLayout layout, double sparsity) {
    if (announce) std::cerr << "dynamicrad: CPU backend, " << name << "...\n";
    const std::unique_ptr<AttentionBackend> backend =
        plan_cpu_attention(std::move(layout), options);
    const AttentionArgs run_args = args_for(output);
    const double t = time_backend(*backend, run_args, repeats);
    results.push_back({name, sparsity, relative_l2_error(output.view(), reference.view()), t});
  };
  run_path("fp32, every block",
           full_layout(shape.batch, shape.heads, shape.tokens, geometry.block_size), 0.0);
  run_path("fp32, radial prior only", prior_only, prior_sparsity);
  run_path("fp32, selected (" + to_string(choice.entry.selection.mode) + ")", selected,
           selected_sparsity);

  std::ostream& out = std::cout;
  out << "dynamicrad attend: " << label << ", regime " << to_string(choice.regime) << ", mode "
      << to_string(choice.entry.selection.mode) << "\n\n";
  print_field(out, "geometry", describe(geometry));
  print_field(out, "tokens",
              count(total_tokens(geometry)) + ", " + count(prior.blocks) + " blocks a side");
  print_field(out, "LUT row",
              choice.lut_source + ": " + describe(choice.entry.prior) + "; " +
                  describe(choice.entry.selection));
  print_field(
      out, "sparsity",
      share(selected_sparsity) + " selected, " + share(prior_sparsity) + " radial prior only");
  print_field(out, "mask build", seconds(mask_s) + " (prior + pool + select)");
  if (total_tokens(geometry) <= recall_max) {
    print_field(
        out, "attention-mass recall",
        fixed(attention_mass_recall(qkv.q.view(), qkv.k.view(), selected, options), 4) +
            " selected, " +
            fixed(attention_mass_recall(qkv.q.view(), qkv.k.view(), prior_only, options), 4) +
            " radial prior only");
  } else {
    print_field(out, "attention-mass recall",
                "skipped: more than " + count(recall_max) + " tokens (see --recall-max-tokens)");
  }
  out << "\n";
  const double dense_s = results.front().time;
  Table table({"path", "sparsity", "relative L2 error", "time", "speedup vs fp32 dense"});
  table.add({"reference, dense (double)", share(0.0), "0", seconds(reference_s), "-"});
  for (const PathResult& r : results) {
    table.add({r.name, share(r.sparsity), general(r.error, 3), seconds(r.time),
               fixed(dense_s / r.time, 2) + "x"});
  }
  table.print(out);
  out << "\n  relative L2 error = ||out - reference|| / ||reference||; fp32 times are the median "
         "of "
      << repeats << " runs on " << (threads == 0 ? std::string("all") : std::to_string(threads))
      << " threads\n";
  return 0;
}

}  // namespace dynamicrad::cli
