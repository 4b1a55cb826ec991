// Convergence plots like the paper's tuning figure: per panel (one tuning cell), the best loss so
// far against the trial number for each method (Bayesian optimisation, random search, TPE), drawn
// as step lines on a log-scaled loss axis with ticks, grid lines, a title and a legend.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dynamicrad {

struct PlotColour {
  std::uint8_t r = 0, g = 0, b = 0;
};

struct PlotSeries {
  std::string name;        // legend text
  PlotColour colour;
  std::vector<double> y;   // y[i] is the value at trial i + 1
};

struct PlotPanel {
  std::string title;
  std::vector<PlotSeries> series;
};

struct ConvergencePlotOptions {
  std::string title;          // above all panels; empty for none
  int columns = 2;            // panels per row, [1, 16]
  int panel_width = 560;      // pixels, [200, 4000]
  int panel_height = 360;     // pixels, [150, 4000]
  std::string x_label = "trial";
  std::string y_label = "best loss";
  bool log_y = true;          // falls back to linear when a value is <= 0
  // The loss axis spans the values from this trial on (1-based); earlier, larger values are drawn
  // clipped at the top edge, so the first few random points do not flatten the interesting part.
  int range_from_trial = 1;   // [1, inf)
};

// Colours the tuner uses for its methods.
inline constexpr PlotColour kBayesColour{37, 99, 235};    // blue
inline constexpr PlotColour kRandomColour{234, 88, 12};   // orange
inline constexpr PlotColour kTpeColour{22, 163, 74};      // green

// Writes the panels as an RGB PNG (atomically). Throws Error on bad options, no panels, a
// non-finite value, or an I/O failure (naming the path).
void write_convergence_png(const std::string& path, const std::vector<PlotPanel>& panels,
                           const ConvergencePlotOptions& options = {});

}  // namespace dynamicrad
