// Convergence plots (plot.h), drawn with simple pixel routines: filled rectangles, thick lines,
// and the 5 x 7 bitmap font at twice its size.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "dynamicrad/error.h"
#include "dynamicrad/plot.h"
#include "io/bitmap_font.h"
#include "io/rgb_png.h"

namespace dynamicrad {
namespace {

constexpr int kTextScale = 2;                                 // font pixels per glyph pixel
constexpr int kAdvance = (detail::kGlyphWidth + 1) * kTextScale;  // pixels per character
constexpr int kTextHeight = detail::kGlyphHeight * kTextScale;
constexpr int kFigureTitleHeight = 40;
// Margins of the plotting area inside a panel (tick labels left, title top, x label below).
constexpr int kMarginLeft = 96;
constexpr int kMarginRight = 16;
constexpr int kMarginTop = 34;
constexpr int kMarginBottom = 52;
constexpr int kLineWidth = 2;
constexpr int kMaxTicks = 7;
constexpr PlotColour kInk{30, 30, 30};
constexpr PlotColour kGrid{225, 225, 225};
constexpr PlotColour kWhite{255, 255, 255};

class Canvas {
 public:
  Canvas(int width, int height)
      : width_(width), height_(height), pixels_(static_cast<std::size_t>(width) * height * 3, 255) {}

  void set(int x, int y, PlotColour c) {
    if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
    std::uint8_t* p = pixels_.data() + (static_cast<std::size_t>(y) * width_ + x) * 3;
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
  }
  void fill(int x0, int y0, int x1, int y1, PlotColour c) {  // inclusive corners
    for (int y = std::min(y0, y1); y <= std::max(y0, y1); ++y) {
      for (int x = std::min(x0, x1); x <= std::max(x0, x1); ++x) set(x, y, c);
    }
  }
  // A line of `thickness` pixels (a square brush moved along a DDA).
  void line(double x0, double y0, double x1, double y1, PlotColour c, int thickness) {
    const int steps = static_cast<int>(std::ceil(std::max(std::abs(x1 - x0), std::abs(y1 - y0)))) + 1;
    for (int i = 0; i <= steps; ++i) {
      const double t = static_cast<double>(i) / steps;
      const int x = static_cast<int>(std::lround(x0 + t * (x1 - x0)));
      const int y = static_cast<int>(std::lround(y0 + t * (y1 - y0)));
      fill(x - (thickness - 1) / 2, y - (thickness - 1) / 2, x + thickness / 2, y + thickness / 2, c);
    }
  }
  // Calls pixel(i, gx, gy) for every set pixel (gx, gy) of the glyph of character i of s.
  template <class Pixel>
  static void glyph_pixels(const std::string& s, Pixel&& pixel) {
    for (std::size_t i = 0; i < s.size(); ++i) {
      const char* const* rows = detail::glyph(s[i]);
      if (rows == nullptr) continue;
      for (int gy = 0; gy < detail::kGlyphHeight; ++gy) {
        for (int gx = 0; gx < detail::kGlyphWidth; ++gx) {
          if (rows[gy][gx] == '#') pixel(static_cast<int>(i), gx, gy);
        }
      }
    }
  }
  void text(int x, int y, const std::string& s, PlotColour c) {  // (x, y): top-left corner
    glyph_pixels(s, [&](int i, int gx, int gy) {
      const int px = x + i * kAdvance + gx * kTextScale;
      fill(px, y + gy * kTextScale, px + kTextScale - 1, y + gy * kTextScale + kTextScale - 1, c);
    });
  }
  // Text drawn bottom-to-top (for the y label), (x, y) the top-left corner of its box.
  void vertical_text(int x, int y, const std::string& s, PlotColour c) {
    const int length = static_cast<int>(s.size()) * kAdvance;
    glyph_pixels(s, [&](int i, int gx, int gy) {
      const int px = x + gy * kTextScale;
      const int py = y + length - (i * kAdvance + gx * kTextScale) - kTextScale;
      fill(px, py, px + kTextScale - 1, py + kTextScale - 1, c);
    });
  }
  const std::vector<std::uint8_t>& pixels() const { return pixels_; }

 private:
  int width_, height_;
  std::vector<std::uint8_t> pixels_;
};

int text_width(const std::string& s) { return static_cast<int>(s.size()) * kAdvance; }

std::string tick_label(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3g", v);
  return buffer;
}

// Ticks for [lo, hi] on a linear axis: multiples of a 1 / 2 / 5 step with at most kMaxTicks.
std::vector<double> linear_ticks(double lo, double hi) {
  const double span = hi - lo;
  double step = std::pow(10.0, std::floor(std::log10(span)));
  for (double m : {0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0}) {
    const double s = step * m;
    if (span / s <= kMaxTicks) {
      step = s;
      break;
    }
  }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + 1e-9 * span; t += step) ticks.push_back(t);
  return ticks;
}

// Ticks for [lo, hi] (natural values) on a log axis: m * 10^k for the densest mantissa set
// (1-9, 1/2/5, 1) that gives at most kMaxTicks, and at least two when possible.
std::vector<double> log_ticks(double lo, double hi) {
  const std::vector<std::vector<double>> sets = {{1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 5}, {1}};
  std::vector<double> chosen;
  for (const auto& set : sets) {
    std::vector<double> ticks;
    for (int k = static_cast<int>(std::floor(std::log10(lo))); k <= static_cast<int>(std::ceil(std::log10(hi))); ++k) {
      for (double m : set) {
        const double t = m * std::pow(10.0, k);
        if (t >= lo * (1 - 1e-9) && t <= hi * (1 + 1e-9)) ticks.push_back(t);
      }
    }
    chosen = ticks;
    if (static_cast<int>(ticks.size()) <= kMaxTicks) break;
  }
  if (chosen.size() < 2) return {lo, hi};
  return chosen;
}

void draw_panel(Canvas& canvas, int left, int top, const PlotPanel& panel,
                const ConvergencePlotOptions& o) {
  const int x0 = left + kMarginLeft, x1 = left + o.panel_width - kMarginRight;
  const int y0 = top + kMarginTop, y1 = top + o.panel_height - kMarginBottom;
  std::size_t points = 1;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const PlotSeries& s : panel.series) {
    points = std::max(points, s.y.size());
    for (std::size_t i = 0; i < s.y.size(); ++i) {
      // The first trials count only when a series is too short to reach range_from_trial.
      if (static_cast<int>(i) + 1 < o.range_from_trial &&
          static_cast<int>(s.y.size()) >= o.range_from_trial) {
        continue;
      }
      lo = std::min(lo, s.y[i]);
      hi = std::max(hi, s.y[i]);
    }
  }
  if (!std::isfinite(lo)) {
    lo = 0.0;
    hi = 1.0;
  }
  const bool log_y = o.log_y && lo > 0.0;
  auto axis = [&](double v) { return log_y ? std::log10(v) : v; };
  double a_lo = axis(lo), a_hi = axis(hi);
  if (a_hi - a_lo < 1e-12) {
    a_lo -= log_y ? 0.1 : std::max(1e-6, std::abs(a_lo) * 0.1);
    a_hi += log_y ? 0.1 : std::max(1e-6, std::abs(a_hi) * 0.1);
  }
  const double pad = 0.06 * (a_hi - a_lo);
  a_lo -= pad;
  a_hi += pad;
  const double x_max = static_cast<double>(std::max<std::size_t>(points, 2));
  auto px = [&](double trial) { return x0 + (trial - 1.0) / (x_max - 1.0) * (x1 - x0); };
  auto py = [&](double v) {  // clipped to the plotting area
    return std::clamp(y1 - (axis(v) - a_lo) / (a_hi - a_lo) * (y1 - y0), static_cast<double>(y0),
                      static_cast<double>(y1));
  };

  // Grid and ticks.
  const double v_lo = log_y ? std::pow(10.0, a_lo) : a_lo, v_hi = log_y ? std::pow(10.0, a_hi) : a_hi;
  for (double t : log_y ? log_ticks(v_lo, v_hi) : linear_ticks(v_lo, v_hi)) {
    const int y = static_cast<int>(std::lround(py(t)));
    canvas.fill(x0, y, x1, y, kGrid);
    canvas.fill(x0 - 5, y, x0, y, kInk);
    const std::string label = tick_label(t);
    canvas.text(x0 - 8 - text_width(label), y - kTextHeight / 2, label, kInk);
  }
  for (double t : linear_ticks(1.0, x_max)) {
    const double trial = std::round(t);
    if (trial < 1.0) continue;
    const int x = static_cast<int>(std::lround(px(trial)));
    canvas.fill(x, y0, x, y1, kGrid);
    canvas.fill(x, y1, x, y1 + 5, kInk);
    const std::string label = tick_label(trial);
    canvas.text(x - text_width(label) / 2, y1 + 9, label, kInk);
  }
  canvas.fill(x0, y0, x0, y1, kInk);
  canvas.fill(x0, y1, x1, y1, kInk);
  canvas.fill(x0, y0, x1, y0, kInk);
  canvas.fill(x1, y0, x1, y1, kInk);

  // Step lines: the best loss holds until the next trial improves it.
  for (const PlotSeries& s : panel.series) {
    for (std::size_t i = 0; i < s.y.size(); ++i) {
      const double x = px(static_cast<double>(i + 1));
      if (i + 1 < s.y.size()) {
        const double xn = px(static_cast<double>(i + 2));
        canvas.line(x, py(s.y[i]), xn, py(s.y[i]), s.colour, kLineWidth);
        canvas.line(xn, py(s.y[i]), xn, py(s.y[i + 1]), s.colour, kLineWidth);
      } else if (s.y.size() == 1) {
        canvas.fill(static_cast<int>(x) - 2, static_cast<int>(py(s.y[i])) - 2,
                    static_cast<int>(x) + 2, static_cast<int>(py(s.y[i])) + 2, s.colour);
      }
    }
  }

  // Title, axis labels, legend (top right inside the plotting area).
  canvas.text(left + (o.panel_width - text_width(panel.title)) / 2, top + 8, panel.title, kInk);
  canvas.text(x0 + (x1 - x0 - text_width(o.x_label)) / 2, y1 + 30, o.x_label, kInk);
  canvas.vertical_text(left + 6, y0 + (y1 - y0 - text_width(o.y_label)) / 2, o.y_label, kInk);
  int widest = 0;
  for (const PlotSeries& s : panel.series) widest = std::max(widest, text_width(s.name));
  const int row = kTextHeight + 6;
  const int box_w = widest + 44, box_h = static_cast<int>(panel.series.size()) * row + 8;
  const int bx = x1 - box_w - 8, by = y0 + 8;
  if (!panel.series.empty()) {
    canvas.fill(bx, by, bx + box_w, by + box_h, kWhite);
    canvas.fill(bx, by, bx + box_w, by, kInk);
    canvas.fill(bx, by + box_h, bx + box_w, by + box_h, kInk);
    canvas.fill(bx, by, bx, by + box_h, kInk);
    canvas.fill(bx + box_w, by, bx + box_w, by + box_h, kInk);
  }
  for (std::size_t i = 0; i < panel.series.size(); ++i) {
    const int ry = by + 6 + static_cast<int>(i) * row;
    canvas.line(bx + 6, ry + kTextHeight / 2, bx + 32, ry + kTextHeight / 2, panel.series[i].colour, 3);
    canvas.text(bx + 38, ry, panel.series[i].name, kInk);
  }
}

}  // namespace

void write_convergence_png(const std::string& path, const std::vector<PlotPanel>& panels,
                           const ConvergencePlotOptions& o) {
  if (panels.empty()) throw Error("plot.panels", "empty; at least one panel is required");
  if (o.columns < 1 || o.columns > 16) {
    throw Error("plot.columns", std::to_string(o.columns) + ": allowed range [1, 16]");
  }
  if (o.panel_width < 200 || o.panel_width > 4000) {
    throw Error("plot.panel_width", std::to_string(o.panel_width) + ": allowed range [200, 4000]");
  }
  if (o.range_from_trial < 1) {
    throw Error("plot.range_from_trial", std::to_string(o.range_from_trial) + ": allowed range [1, inf)");
  }
  if (o.panel_height < 150 || o.panel_height > 4000) {
    throw Error("plot.panel_height", std::to_string(o.panel_height) + ": allowed range [150, 4000]");
  }
  for (std::size_t p = 0; p < panels.size(); ++p) {
    for (const PlotSeries& s : panels[p].series) {
      for (double v : s.y) {
        if (!std::isfinite(v)) {
          throw Error("plot.panels[" + std::to_string(p) + "]." + s.name, "holds a non-finite value");
        }
      }
    }
  }
  const int columns = std::min<int>(o.columns, static_cast<int>(panels.size()));
  const int rows = (static_cast<int>(panels.size()) + columns - 1) / columns;
  const int header = o.title.empty() ? 0 : kFigureTitleHeight;
  const int width = columns * o.panel_width;
  const int height = header + rows * o.panel_height;
  Canvas canvas(width, height);
  if (!o.title.empty()) canvas.text((width - text_width(o.title)) / 2, 12, o.title, kInk);
  for (std::size_t p = 0; p < panels.size(); ++p) {
    const int c = static_cast<int>(p) % columns, r = static_cast<int>(p) / columns;
    draw_panel(canvas, c * o.panel_width, header + r * o.panel_height, panels[p], o);
  }
  detail::write_rgb_png(path, canvas.pixels(), width, height);
}

}  // namespace dynamicrad
