#ifndef FEDGE_COMMON_SVG_PLOT_H_
#define FEDGE_COMMON_SVG_PLOT_H_

// A small SVG chart writer for benchmark and run reports: series of points
// (markers, optionally joined by lines) on linear axes with ticks, labels and
// a legend. No dependencies; the output opens in any browser.
//
//   PlotSeries s{"learned", {10, 20}, {0.85, 0.88}};
//   WriteFile("frontier.svg", RenderSvgPlot({s}, {"Accuracy vs size", "kB", "accuracy"}));
//
// Thread-safe (pure).

#include <string>
#include <vector>

namespace fedge {

struct PlotSeries {
  std::string label;
  std::vector<double> x, y;
  bool lines = true;
  std::string color;  // empty: a default palette colour
  // Optional half-widths of error bars (say one standard deviation), index
  // for index with the points; drawn as whiskers with caps.
  std::vector<double> x_err, y_err;
};

struct PlotOptions {
  std::string title;
  std::string x_label;
  std::string y_label;
  int width = 760;
  int height = 480;
};

std::string RenderSvgPlot(const std::vector<PlotSeries>& series, const PlotOptions& options);

}  // namespace fedge

#endif  // FEDGE_COMMON_SVG_PLOT_H_
