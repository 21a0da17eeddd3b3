#include "common/io/svg_plot.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(SvgPlotTest, DrawsEverySeriesPointAndLegend) {
  PlotSeries a{"learned <mixed>", {10, 20, 30}, {0.8, 0.85, 0.9}};
  PlotSeries b{"uniform", {15, 40}, {0.82, 0.88}, /*lines=*/false};
  const std::string svg = RenderSvgPlot({a, b}, {"Accuracy vs size", "kB", "accuracy"});
  EXPECT_THAT(svg, HasSubstr("<svg"));
  EXPECT_THAT(svg, HasSubstr("learned &lt;mixed&gt;"));
  EXPECT_THAT(svg, HasSubstr("Accuracy vs size"));
  // 5 points plus 2 legend markers; one polyline (b has no lines).
  EXPECT_EQ(Count(svg, "<circle"), 7);
  EXPECT_EQ(Count(svg, "<polyline"), 1);
}

TEST(SvgPlotTest, ErrorBarsWidenTheAxes) {
  PlotSeries a{"learned", {10, 20}, {85, 90}};
  a.y_err = {1.5, -1};  // a negative half-width draws nothing
  const std::string svg = RenderSvgPlot({a}, {"t", "kB", "accuracy"});
  EXPECT_EQ(Count(svg, "class=\"error-bar\""), 1);
  // 85 - 1.5 = 83.5 is on the plot: the y axis starts at 83 or below.
  EXPECT_THAT(svg, HasSubstr(">83<"));
  a.x_err = {0, 2};
  EXPECT_EQ(Count(RenderSvgPlot({a}, {"t", "kB", "accuracy"}), "class=\"error-bar\""), 2);
}

TEST(SvgPlotTest, SurvivesDegenerateInput) {
  PlotSeries flat{"flat", {1, 1}, {2, 2}};
  PlotSeries nan{"nan", {0.0 / 0.0}, {1}};
  const std::string svg = RenderSvgPlot({flat, nan}, {});
  EXPECT_THAT(svg, HasSubstr("</svg>"));
  EXPECT_EQ(Count(svg, "<circle"), 2 + 2);
  EXPECT_THAT(RenderSvgPlot({}, {}), HasSubstr("</svg>"));
}

}  // namespace
}  // namespace fedge
