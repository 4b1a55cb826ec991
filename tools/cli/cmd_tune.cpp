// `dynamicrad tune`: the offline Bayesian-optimisation tuner (PAPER.md part 3, issue 4). Runs the
// grid regime x mode on the proxy task, with a random-search baseline, and writes the LUT, a CSV
// of every trial and a convergence picture. Side doors serve outside optimisers and figures:
//   --space          prints the search space as JSON;
//   --evaluate REQ   evaluates parameter sets (REQ a JSON request, or "-" for one per stdin line)
//                    and prints one JSON result per request (tune_json.h);
//   --evaluate-lut F evaluates the rows of a LUT file as written at this geometry;
//   --evaluate-best C evaluates each cell's best BO trial of a trials CSV (transferable form) here;
//   --plot CSV,...   redraws convergence curves averaged over trial CSVs (seeds, methods).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#include "commands.h"
#include "dynamicrad/device.h"
#include "dynamicrad/error.h"
#include "dynamicrad/lut.h"
#include "dynamicrad/presets.h"
#include "dynamicrad/tune.h"
#include "dynamicrad/tune_json.h"
#include "engine_flags.h"
#include "output_path.h"
#include "report.h"
#include "tune_plot.h"

namespace dynamicrad::cli {
namespace {

FlagSet tune_flags() {
  std::vector<FlagSpec> specs = geometry_flags(default_tune_geometry());
  std::vector<std::string> lut_geometries = {"tune"};
  for (const std::string& name : preset_names()) lut_geometries.push_back(name);
  const std::vector<FlagSpec> own = {
      {"trials", "N", "Bayesian-optimisation trials per cell", "30", {}},
      {"random-baseline", "N", "random-search trials per cell on the same objective (0: none)", "30", {}},
      {"seed", "N", "optimiser seed (BO design and candidates, random search)", "1", {}},
      {"scene-seed", "N", "seed of the proxy scene", "1", {}},
      {"scene", "KIND", "proxy task: the paper's AR drift or the physics scene", "physics",
       {"drift", "physics"}},
      {"target-sparsity", "X", "block sparsity under which the loss is penalised (0.80 | 0.85 | 0.90)",
       "0.80", {}},
      {"penalty", "X", "loss per unit of sparsity under the target", "10", {}},
      {"regimes", "LIST", "comma-separated motion regimes to tune", "low,mid,high", {}},
      {"modes", "LIST", "comma-separated modes (static-ratio, dynamic-threshold, radial-prior)",
       "static-ratio,dynamic-threshold", {}},
      {"compare-prior", "", "also tune the radial prior alone (no selection) as a baseline", "", {}},
      {"bounds", "LIST", "search bounds, e.g. gamma=0.25:2,r_near=0.1:0.8", "", {}},
      {"initial", "N", "Latin-hypercube points before the GP (0: parameters + 1, at least 5)", "0", {}},
      {"lut-geometry", "NAME",
       "geometry the LUT's dynamic-threshold taus are converted for ('tune': the tuning one)", "tune",
       lut_geometries},
      {"threads", "N", "CPU worker threads for attention; 0 uses every hardware thread", "0", {}},
      {"device", "WHERE",
       "where the proxy runs: the CUDA engine at full scale (bf16; without geometry flags the "
       "wan2.1-14b-720p preset), the CPU engine at the scaled-down default, or auto (cuda when a "
       "GPU is present)",
       "auto", {"auto", "cpu", "cuda"}},
      {"out-dir", "DIR", "where lut.json, trials.csv and convergence.png go", "tune-out", {}},
      {"space", "", "print the search space of --modes as JSON and exit", "", {}},
      {"evaluate", "REQUEST",
       "evaluate a JSON request ('-': one per line of stdin) and print the result as JSON", "", {}},
      {"evaluate-lut", "FILE",
       "evaluate every row of a LUT (taus as written) on the proxy at this geometry and exit", "", {}},
      {"evaluate-best", "CSV",
       "evaluate each cell's best BO trial of a trials CSV (as tuned: relative taus) at this geometry",
       "", {}},
      {"plot", "CSV,...", "draw curves averaged over trial CSVs into --png and exit", "", {}},
      {"png", "FILE", "output picture of --plot", "convergence-mean.png", {}},
      {"plot-trials", "N", "--plot draws at most this many trials per curve (0: all)", "0", {}},
      {"title", "TEXT", "title of the picture", "", {}},
  };
  specs.insert(specs.end(), own.begin(), own.end());
  return FlagSet(
      "dynamicrad tune",
      "Tunes the radial prior and selection parameters per motion regime and mode by Bayesian\n"
      "optimisation (GP with Matern 5/2 kernel, expected improvement) on the proxy task, with a\n"
      "random-search baseline; writes the LUT, every trial as CSV and a convergence picture.\n"
      "Loss = MSE(sparse, dense) / var(dense) + penalty * max(0, target - sparsity).",
      std::move(specs));
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

// Runs `parse` and turns a library error about a flag's value into a usage error naming the flag.
template <typename Fn>
auto as_usage(const std::string& flag, Fn&& parse) {
  try {
    return parse();
  } catch (const Error& e) {
    throw UsageError("--" + flag + ": " + e.what());
  }
}

// The target sparsities the tuner is calibrated for, compared as numbers (0.8 is 0.80).
constexpr double kTargetSparsities[] = {0.80, 0.85, 0.90};

double target_sparsity(const FlagSet& flags) {
  const std::string text = flags.text("target-sparsity");
  char* end = nullptr;
  const double target = std::strtod(text.c_str(), &end);
  const bool numeric = !text.empty() && *end == '\0';
  for (double allowed : kTargetSparsities) {
    if (numeric && target == allowed) return target;
  }
  throw UsageError("--target-sparsity = '" + text + "': allowed values are 0.80, 0.85, 0.90");
}

// auto: the CUDA engine when this build has it and a GPU is visible. cuda in a build without it is
// a usage error (exit 2), found before any work.
Device resolve_device(const std::string& text) {
  if (text == "cpu") return Device::cpu;
  if (text == "cuda") {
    if (!built_with_cuda()) {
      throw UsageError("--device = cuda: this dynamicrad was built without CUDA (DYNAMICRAD_CUDA=OFF); "
                       "allowed values here are auto, cpu");
    }
    if (cuda_device_count() == 0) throw Error("--device", "cuda, but no CUDA device is visible");
    return Device::cuda;
  }
  return built_with_cuda() && cuda_device_count() > 0 ? Device::cuda : Device::cpu;
}

bool geometry_given(const FlagSet& flags) {
  for (const char* name : {"preset", "frames", "height", "width", "text-tokens", "text-placement", "heads",
                           "head-dim", "block", "order"}) {
    if (flags.given(name)) return true;
  }
  return false;
}

TuneOptions options_from_flags(const FlagSet& flags, std::string* label) {
  TuneOptions o;
  o.device = resolve_device(flags.text("device"));
  o.geometry = geometry_from_flags(flags, label);
  if (o.device == Device::cuda && !geometry_given(flags)) {
    o.geometry = preset_geometry("wan2.1-14b-720p");
    if (label != nullptr) *label = "wan2.1-14b-720p";
  }
  o.trials = static_cast<int>(flags.integer("trials", 1, 10000));
  o.random_trials = static_cast<int>(flags.integer("random-baseline", 0, 100000));
  o.seed = static_cast<std::uint64_t>(flags.integer("seed", 0, INT64_MAX));
  o.scene_seed = static_cast<std::uint64_t>(flags.integer("scene-seed", 0, INT64_MAX));
  o.scene = parse_scene_kind(flags.text("scene"));
  o.target_sparsity = target_sparsity(flags);
  o.penalty = flags.number("penalty", 0.0, 1e6);
  o.threads = static_cast<int>(flags.integer("threads", 0, 1024));
  o.initial_points = static_cast<int>(flags.integer("initial", 0, o.trials));
  o.regimes.clear();
  for (const std::string& r : split_list(flags.text("regimes"))) {
    o.regimes.push_back(as_usage("regimes", [&] { return parse_motion_regime(r, "regime"); }));
  }
  o.modes.clear();
  for (const std::string& m : split_list(flags.text("modes"))) {
    o.modes.push_back(as_usage("modes", [&] { return parse_tune_mode(m, "mode"); }));
  }
  if (flags.on("compare-prior") &&
      std::find(o.modes.begin(), o.modes.end(), TuneMode::radial_prior) == o.modes.end()) {
    o.modes.push_back(TuneMode::radial_prior);
  }
  if (flags.has("bounds")) o.bounds = as_usage("bounds", [&] { return parse_bounds(flags.text("bounds")); });
  if (flags.text("lut-geometry") != "tune") o.lut_geometry = preset_geometry(flags.text("lut-geometry"));
  try {
    validate(o);
  } catch (const Error& e) {
    // Flag ranges already hold every other field, so what is left is a bound (named in the message).
    throw UsageError((e.field().rfind("bounds", 0) == 0 ? "--bounds: " : "") + std::string(e.what()));
  }
  return o;
}

// Progress on stderr: a line rewritten in place on a terminal, one line per finished method
// otherwise (so logs stay short).
class Progress {
 public:
  Progress() : tty_(::isatty(2) != 0) {}

  void operator()(const TuneProgress& p) {
    const std::string cell = "[" + std::to_string(p.cell + 1) + "/" + std::to_string(p.cells) + "] " +
                             to_string(p.regime);
    if (p.stage == TuneProgress::Stage::scene) {
      std::cerr << "dynamicrad tune: " << cell << ": building the proxy scene and its dense attention\n";
      return;
    }
    const TrialRecord& t = *p.trial;
    if (t.trial == 1) start_ = std::chrono::steady_clock::now();
    const std::string line = cell + " " + to_string(p.mode) + " " + to_string(p.method) + " " +
                             std::to_string(t.trial) + "/" + std::to_string(p.trials) + "  loss " +
                             general(t.evaluation.loss, 4) + "  best " + general(p.best_loss, 4) +
                             "  sparsity " + share(t.evaluation.sparsity);
    if (tty_) std::cerr << "\r" << line << "   " << std::flush;
    if (t.trial == p.trials) {
      if (tty_) std::cerr << "\n";
      else std::cerr << "dynamicrad tune: " << line << "  (" << seconds(seconds_since(start_)) << ")\n";
    }
  }

 private:
  bool tty_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// One proxy objective per regime, built on first use (the scene and its dense attention are the
// slow part).
class ObjectiveCache {
 public:
  explicit ObjectiveCache(const TuneOptions& options) : options_(options) {}
  const ProxyObjective& get(MotionRegime regime) {
    std::unique_ptr<ProxyObjective>& slot = objectives_[regime];
    if (!slot) slot = std::make_unique<ProxyObjective>(objective_options(options_, regime));
    return *slot;
  }

 private:
  const TuneOptions& options_;
  std::map<MotionRegime, std::unique_ptr<ProxyObjective>> objectives_;
};

std::string describe(const TunedParams& p) {
  std::ostringstream out;
  out.precision(4);
  out << "gamma " << p.prior.gamma << ", lambda " << p.prior.lambda << ", theta_m " << p.prior.theta_m
      << ", theta_c " << p.prior.theta_c << ", dense_adjacent " << (p.prior.dense_adjacent ? "on" : "off");
  if (p.mode == TuneMode::static_ratio) out << ", r_near " << p.r_near << ", r_far " << p.r_far;
  if (p.mode == TuneMode::dynamic_threshold) {
    out << ", tau_near_rel " << p.tau_near_rel << ", tau_far_rel " << p.tau_far_rel;
  }
  return out.str();
}

int run_evaluate(const FlagSet& flags, const TuneOptions& o) {
  ObjectiveCache objectives(o);
  auto answer = [&](const std::string& text) {
    const EvaluateRequest request = as_usage("evaluate", [&] { return parse_evaluate_request(text); });
    const ProxyObjective& objective = objectives.get(request.regime);
    std::cout << evaluation_to_json(objective.evaluate(request.params)) << std::endl;
  };
  const std::string request = flags.text("evaluate");
  if (request != "-") {
    answer(request);
    return 0;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    if (!line.empty()) answer(line);
  }
  return 0;
}

// Evaluates the rows of a LUT file as written (absolute taus) on this geometry's proxy: how a LUT
// tuned elsewhere does here.
int run_evaluate_lut(const FlagSet& flags, const TuneOptions& o) {
  const Lut lut = load_lut(flags.text("evaluate-lut"));
  Table table({"regime", "mode", "loss", "error", "sparsity", "relative L2", "tau_near_rel", "tau_far_rel"});
  ObjectiveCache objectives(o);
  for (const LutEntry& entry : lut.entries) {
    const ProxyObjective& objective = objectives.get(entry.regime);
    const TunedParams params = tuned_from_lut(entry, o.geometry);
    const Evaluation e = objective.evaluate(params);
    const bool dynamic = params.mode == TuneMode::dynamic_threshold;
    table.add({to_string(entry.regime), to_string(params.mode), general(e.loss, 4), general(e.error, 4),
               share(e.sparsity), general(e.relative_l2, 4), dynamic ? general(params.tau_near_rel, 4) : "-",
               dynamic ? general(params.tau_far_rel, 4) : "-"});
  }
  std::cout << "dynamicrad tune --evaluate-lut " << flags.text("evaluate-lut") << ": "
            << cli::describe(o.geometry) << ", " << to_string(o.scene) << " proxy\n\n";
  table.print(std::cout);
  return 0;
}

// Evaluates each cell's best BO trial of a trials CSV at this geometry, in the transferable form it
// was tuned in (relative taus): how parameters tuned at another resolution do here.
int run_evaluate_best(const FlagSet& flags, const TuneOptions& o) {
  const std::vector<TrialRecord> best = best_trials_from_csv(flags.text("evaluate-best"));
  Table table({"regime", "mode", "loss", "error", "sparsity", "relative L2", "loss where tuned"});
  ObjectiveCache objectives(o);
  for (const TrialRecord& t : best) {
    const ProxyObjective& objective = objectives.get(t.regime);
    const Evaluation e = objective.evaluate(t.params);
    table.add({to_string(t.regime), to_string(t.mode), general(e.loss, 4), general(e.error, 4),
               share(e.sparsity), general(e.relative_l2, 4), general(t.evaluation.loss, 4)});
  }
  std::cout << "dynamicrad tune --evaluate-best " << flags.text("evaluate-best") << ": "
            << cli::describe(o.geometry) << ", " << to_string(o.scene) << " proxy\n\n";
  table.print(std::cout);
  return 0;
}

}  // namespace

int run_tune(const std::vector<std::string>& args) {
  FlagSet flags = tune_flags();
  flags.parse(args);
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  if (flags.given("plot")) {
    const std::vector<std::string> files = split_list(flags.text("plot"));
    if (files.empty()) throw UsageError("--plot: expected a comma-separated list of CSV files");
    require_writable(flags.text("png"));
    write_csv_plot(flags.text("png"), files, flags.text("title"),
                   static_cast<std::size_t>(flags.integer("plot-trials", 0, 1000000)));
    std::cout << "wrote " << flags.text("png") << " from " << files.size() << " CSV file(s)\n";
    return 0;
  }
  std::string label;
  const TuneOptions o = options_from_flags(flags, &label);
  if (flags.on("space")) {
    std::cout << search_space_to_json(o.modes, o.bounds) << "\n";
    return 0;
  }
  if (flags.given("evaluate")) return run_evaluate(flags, o);
  if (flags.given("evaluate-lut")) return run_evaluate_lut(flags, o);
  if (flags.given("evaluate-best")) return run_evaluate_best(flags, o);

  const std::filesystem::path dir = flags.text("out-dir");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(dir.string(), "cannot create the output folder: " + ec.message());
  const std::string lut_path = (dir / "lut.json").string();
  const std::string csv_path = (dir / "trials.csv").string();
  const std::string png_path = (dir / "convergence.png").string();
  // Before the tuning, which takes minutes.
  const bool writes_lut = std::any_of(o.modes.begin(), o.modes.end(),
                                      [](TuneMode m) { return m != TuneMode::radial_prior; });
  if (writes_lut) require_writable(lut_path);
  require_writable(csv_path);
  require_writable(png_path);

  Progress progress;
  const auto start = std::chrono::steady_clock::now();
  const TuneResult result = tune(o, [&](const TuneProgress& p) { progress(p); });
  const double total_s = seconds_since(start);

  if (!result.lut.entries.empty()) {
    Lut lut = result.lut;
    // The taus are absolute for the --lut-geometry preset; say so in the file.
    if (flags.text("lut-geometry") != "tune") lut.calibrated_for = flags.text("lut-geometry");
    save_lut(lut, lut_path);
  }
  write_trials_csv(csv_path, result.trials);
  const std::string title = flags.given("title") ? flags.text("title")
                                                 : "DynamicRad tuner: " + to_string(o.scene) +
                                                       " proxy, target sparsity " +
                                                       fixed(o.target_sparsity, 2) + ", seed " +
                                                       std::to_string(o.seed);
  write_result_plot(png_path, result, title);

  std::ostream& out = std::cout;
  out << "dynamicrad tune: " << label << ", " << to_string(o.scene) << " proxy (scene seed "
      << o.scene_seed << "), seed " << o.seed << "\n\n";
  print_field(out, "geometry", cli::describe(o.geometry));
  print_field(out, "device", o.device == Device::cuda ? "cuda (CUDA engine, bf16)" : "cpu (CPU engine, fp32)");
  print_field(out, "objective", "MSE/var + " + general(o.penalty, 3) + " x max(0, " +
                                    fixed(o.target_sparsity, 2) + " - sparsity)");
  print_field(out, "trials per cell", std::to_string(o.trials) + " BO, " +
                                          std::to_string(o.random_trials) + " random search");
  print_field(out, "time", seconds(total_s) + " total: " + seconds(result.scene_seconds) +
                               " scenes + dense, " + seconds(result.bayes_seconds) + " BO, " +
                               seconds(result.random_seconds) + " random search");
  out << "\n";
  Table table({"regime", "mode", "BO loss", "error", "sparsity", "random loss (same trials)",
               "random loss (all)", "BO time"});
  for (const CellResult& c : result.cells) {
    std::string random_same = "-", random_all = "-";
    if (c.best_random) {
      const std::vector<double> curve = best_so_far(result.trials, c.regime, c.mode, SearchMethod::random);
      random_same = general(curve[std::min<std::size_t>(curve.size(), static_cast<std::size_t>(o.trials)) - 1], 4);
      random_all = general(c.best_random->evaluation.loss, 4) + " (" + std::to_string(curve.size()) + ")";
    }
    const Evaluation& e = c.best_bayes.evaluation;
    table.add({to_string(c.regime), to_string(c.mode), general(e.loss, 4), general(e.error, 4),
               share(e.sparsity), random_same, random_all, seconds(c.seconds)});
  }
  table.print(out);
  out << "\n  best parameters (taus relative to the uniform share of a prior row):\n";
  for (const CellResult& c : result.cells) {
    out << "    " << to_string(c.regime) << " / " << to_string(c.mode) << ": "
        << describe(c.best_bayes.params) << "\n";
  }
  out << "\n";
  if (!result.lut.entries.empty()) {
    print_field(out, "LUT", lut_path + " (" + std::to_string(result.lut.entries.size()) + " rows, taus for " +
                                (o.lut_geometry ? flags.text("lut-geometry") : std::string("the tuning geometry")) + ")");
  }
  print_field(out, "trials", csv_path + " (" + std::to_string(result.trials.size()) + " rows)");
  print_field(out, "convergence", png_path);
  return 0;
}

}  // namespace dynamicrad::cli
