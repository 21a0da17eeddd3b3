#include "common/io/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace fedge {
namespace {

constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                    "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string Escape(const std::string& text) {
  return absl::StrReplaceAll(text, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}});
}

// A "nice" tick step near range / 5: 1, 2 or 5 times a power of ten.
double TickStep(double range) {
  if (!(range > 0)) return 1;
  const double raw = range / 5;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  const double unit = raw / power;
  return power * (unit < 1.5 ? 1 : unit < 3.5 ? 2 : unit < 7.5 ? 5 : 10);
}

// The error bar's half-width at point i: 0 where none is given or it is not
// a finite non-negative number.
double ErrorAt(const std::vector<double>& err, size_t i) {
  if (i >= err.size() || !std::isfinite(err[i]) || err[i] < 0) return 0;
  return err[i];
}

}  // namespace

std::string RenderSvgPlot(const std::vector<PlotSeries>& series, const PlotOptions& options) {
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const PlotSeries& s : series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      const double ex = ErrorAt(s.x_err, i), ey = ErrorAt(s.y_err, i);
      x0 = std::min(x0, s.x[i] - ex);
      x1 = std::max(x1, s.x[i] + ex);
      y0 = std::min(y0, s.y[i] - ey);
      y1 = std::max(y1, s.y[i] + ey);
    }
  }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
  const double xs = TickStep(x1 - x0), ys = TickStep(y1 - y0);
  x0 = std::floor(x0 / xs) * xs;
  x1 = std::ceil(x1 / xs) * xs;
  y0 = std::floor(y0 / ys) * ys;
  y1 = std::ceil(y1 / ys) * ys;

  const int w = options.width, h = options.height;
  const double left = 70, right = w - 190, top = 40, bottom = h - 55;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (right - left); };
  auto py = [&](double y) { return bottom - (y - y0) / (y1 - y0) * (bottom - top); };

  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
      "<text x=\"%d\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">%s</text>\n",
      w, h, w / 2, Escape(options.title));
  for (double x = x0; x <= x1 + xs / 2; x += xs) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                          px(x), top, px(x), bottom, px(x), bottom + 16, x);
  }
  for (double y = y0; y <= y1 + ys / 2; y += ys) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                          left, py(y), right, py(y), left - 6, py(y) + 4, y);
  }
  absl::StrAppendFormat(&svg,
                        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                        "fill=\"none\" stroke=\"#333\"/>\n"
                        "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n"
                        "<text transform=\"translate(18,%.1f) rotate(-90)\" "
                        "text-anchor=\"middle\">%s</text>\n",
                        left, top, right - left, bottom - top, (left + right) / 2, h - 15,
                        Escape(options.x_label), (top + bottom) / 2, Escape(options.y_label));
  for (size_t k = 0; k < series.size(); ++k) {
    const PlotSeries& s = series[k];
    const std::string color = s.color.empty() ? kPalette[k % 8] : s.color;
    std::string points;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      absl::StrAppendFormat(&points, "%.1f,%.1f ", px(s.x[i]), py(s.y[i]));
      // Bars shorter than a pixel (a spread of rounding noise) are not drawn.
      if (const double ey = ErrorAt(s.y_err, i); py(s.y[i] - ey) - py(s.y[i] + ey) >= 1) {
        const double top_y = py(s.y[i] + ey), low_y = py(s.y[i] - ey), cx = px(s.x[i]);
        absl::StrAppendFormat(&svg,
                              "<path class=\"error-bar\" d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f "
                              "%.1fH%.1f\" stroke=\"%s\" fill=\"none\"/>\n",
                              cx, top_y, low_y, cx - 4, top_y, cx + 4, cx - 4, low_y, cx + 4,
                              color);
      }
      if (const double ex = ErrorAt(s.x_err, i); px(s.x[i] + ex) - px(s.x[i] - ex) >= 1) {
        const double left_x = px(s.x[i] - ex), right_x = px(s.x[i] + ex), cy = py(s.y[i]);
        absl::StrAppendFormat(&svg,
                              "<path class=\"error-bar\" d=\"M%.1f %.1fH%.1fM%.1f %.1fV%.1fM%.1f "
                              "%.1fV%.1f\" stroke=\"%s\" fill=\"none\"/>\n",
                              left_x, cy, right_x, left_x, cy - 4, cy + 4, right_x, cy - 4,
                              cy + 4, color);
      }
      absl::StrAppendFormat(&svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n",
                            px(s.x[i]), py(s.y[i]), color);
    }
    if (s.lines && !points.empty()) {
      absl::StrAppendFormat(&svg,
                            "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" "
                            "stroke-width=\"2\"/>\n",
                            points, color);
    }
    const double ly = top + 10 + 20 * k;
    absl::StrAppendFormat(&svg,
                          "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                          right + 18, ly, color, right + 30, ly + 4, Escape(s.label));
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace fedge
