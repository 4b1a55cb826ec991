#include "tune_plot.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "dynamicrad/error.h"
#include "dynamicrad/plot.h"
#include "dynamicrad/tune_space.h"

namespace dynamicrad::cli {
namespace {

// The loss axes span trials 4 onwards: the design's first points are often far off the target
// sparsity (losses near 1) and would flatten the part where the methods differ.
constexpr int kRangeFromTrial = 4;

PlotColour colour_of(const std::string& method) {
  if (method == "bo") return kBayesColour;
  if (method == "random") return kRandomColour;
  return kTpeColour;
}

std::string legend_of(const std::string& method) {
  if (method == "bo") return "BO (GP-EI)";
  if (method == "random") return "random search";
  if (method == "tpe") return "TPE (optuna)";
  return method;
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream in(line);
  std::string cell;
  while (std::getline(in, cell, ',')) cells.push_back(cell);
  if (!line.empty() && line.back() == ',') cells.push_back("");
  return cells;
}

}  // namespace

void write_result_plot(const std::string& path, const TuneResult& result, const std::string& title) {
  std::vector<PlotPanel> panels;
  for (const CellResult& c : result.cells) {
    PlotPanel panel;
    panel.title = to_string(c.regime) + " / " + to_string(c.mode);
    panel.series.push_back({legend_of("bo"), kBayesColour,
                            best_so_far(result.trials, c.regime, c.mode, SearchMethod::bayes)});
    std::vector<double> random = best_so_far(result.trials, c.regime, c.mode, SearchMethod::random);
    if (!random.empty()) panel.series.push_back({legend_of("random"), kRandomColour, random});
    panels.push_back(panel);
  }
  ConvergencePlotOptions options;
  options.title = title;
  options.range_from_trial = kRangeFromTrial;
  write_convergence_png(path, panels, options);
}

void write_csv_plot(const std::string& path, const std::vector<std::string>& csv_files,
                    const std::string& title, std::size_t max_trials) {
  // curves[cell][method] = one best-so-far curve per file.
  std::map<std::string, std::map<std::string, std::vector<std::vector<double>>>> curves;
  std::vector<std::string> cell_order;
  for (const std::string& file : csv_files) {
    std::ifstream in(file);
    if (!in) throw Error(file, "cannot open for reading");
    std::string line;
    if (!std::getline(in, line)) throw Error(file, "empty; expected a trials CSV header");
    const std::vector<std::string> header = split(line);
    auto column = [&](const std::string& name) {
      const auto it = std::find(header.begin(), header.end(), name);
      if (it == header.end()) throw Error(file, "no column \"" + name + "\" in the header");
      return static_cast<std::size_t>(it - header.begin());
    };
    const std::size_t cell_col = column("cell"), method_col = column("method"),
                      loss_col = column("loss");
    std::map<std::string, std::map<std::string, std::vector<double>>> own;
    for (int row = 2; std::getline(in, line); ++row) {
      if (line.empty()) continue;
      const std::vector<std::string> cells = split(line);
      if (cells.size() != header.size()) {
        throw Error(file + ": line " + std::to_string(row),
                    "has " + std::to_string(cells.size()) + " fields, the header " +
                        std::to_string(header.size()));
      }
      char* end = nullptr;
      const double loss = std::strtod(cells[loss_col].c_str(), &end);
      if (cells[loss_col].empty() || *end != '\0') {
        throw Error(file + ": line " + std::to_string(row), "loss \"" + cells[loss_col] + "\" is not a number");
      }
      std::vector<double>& curve = own[cells[cell_col]][cells[method_col]];
      curve.push_back(curve.empty() ? loss : std::min(curve.back(), loss));
      if (std::find(cell_order.begin(), cell_order.end(), cells[cell_col]) == cell_order.end()) {
        cell_order.push_back(cells[cell_col]);
      }
    }
    for (auto& [cell, methods] : own) {
      for (auto& [method, curve] : methods) curves[cell][method].push_back(curve);
    }
  }
  if (cell_order.empty()) throw Error("plot", "the trial CSVs hold no trials");
  std::vector<PlotPanel> panels;
  const std::vector<std::string> method_order = {"bo", "random", "tpe"};
  for (const std::string& cell : cell_order) {
    PlotPanel panel;
    panel.title = cell;
    std::vector<std::string> methods = method_order;
    for (const auto& [method, unused] : curves[cell]) {
      if (std::find(methods.begin(), methods.end(), method) == methods.end()) methods.push_back(method);
    }
    for (const std::string& method : methods) {
      const auto it = curves[cell].find(method);
      if (it == curves[cell].end()) continue;
      std::size_t length = std::numeric_limits<std::size_t>::max();
      for (const auto& c : it->second) length = std::min(length, c.size());
      if (max_trials > 0) length = std::min(length, max_trials);
      std::vector<double> mean(length, 0.0);
      for (const auto& c : it->second) {
        for (std::size_t i = 0; i < length; ++i) mean[i] += c[i] / static_cast<double>(it->second.size());
      }
      std::string name = legend_of(method);
      if (it->second.size() > 1) name += " x" + std::to_string(it->second.size());
      panel.series.push_back({name, colour_of(method), mean});
    }
    panels.push_back(panel);
  }
  ConvergencePlotOptions options;
  options.title = title;
  options.y_label = csv_files.size() > 1 ? "mean best loss" : "best loss";
  options.range_from_trial = kRangeFromTrial;
  write_convergence_png(path, panels, options);
}

std::vector<TrialRecord> best_trials_from_csv(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw Error(file, "cannot open for reading");
  std::string line;
  if (!std::getline(in, line)) throw Error(file, "empty; expected a trials CSV header");
  const std::vector<std::string> header = split(line);
  std::vector<TrialRecord> best;
  for (int row = 2; std::getline(in, line); ++row) {
    if (line.empty()) continue;
    const std::string where = file + ": line " + std::to_string(row);
    const std::vector<std::string> cells = split(line);
    if (cells.size() != header.size()) throw Error(where, "field count differs from the header");
    auto field = [&](const std::string& name) -> const std::string& {
      const auto it = std::find(header.begin(), header.end(), name);
      if (it == header.end()) throw Error(file, "no column \"" + name + "\" in the header");
      return cells[static_cast<std::size_t>(it - header.begin())];
    };
    auto number = [&](const std::string& name) {
      char* end = nullptr;
      const std::string& text = field(name);
      const double v = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0') throw Error(where, name + " \"" + text + "\" is not a number");
      return v;
    };
    if (field("method") != "bo") continue;
    TrialRecord t;
    t.regime = parse_motion_regime(field("regime"), where + ": regime");
    t.mode = parse_tune_mode(field("mode"), where + ": mode");
    t.params.mode = t.mode;
    t.params.prior.gamma = number("gamma");
    t.params.prior.lambda = number("lambda");
    t.params.prior.theta_m = number("theta_m");
    t.params.prior.theta_c = number("theta_c");
    t.params.prior.dense_adjacent = field("dense_adjacent") == "true";
    if (t.mode == TuneMode::static_ratio) {
      t.params.r_near = number("r_near");
      t.params.r_far = number("r_far");
    } else if (t.mode == TuneMode::dynamic_threshold) {
      t.params.tau_near_rel = number("tau_near_rel");
      t.params.tau_far_rel = number("tau_far_rel");
    }
    t.evaluation.loss = number("loss");
    auto same_cell = [&](const TrialRecord& b) { return b.regime == t.regime && b.mode == t.mode; };
    const auto it = std::find_if(best.begin(), best.end(), same_cell);
    if (it == best.end()) best.push_back(t);
    else if (t.evaluation.loss < it->evaluation.loss) *it = t;
  }
  if (best.empty()) throw Error(file, "holds no BO trials");
  return best;
}

}  // namespace dynamicrad::cli
