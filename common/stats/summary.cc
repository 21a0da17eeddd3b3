#include "common/stats/summary.h"

#include <cmath>

namespace fedge {

MeanSd Summarize(const std::vector<double>& values) {
  MeanSd s;
  if (values.empty()) return s;
  for (double x : values) s.mean += x;
  s.mean /= values.size();
  if (values.size() > 1) {
    double ss = 0;
    for (double x : values) ss += (x - s.mean) * (x - s.mean);
    s.sd = std::sqrt(ss / (values.size() - 1));
  }
  return s;
}

}  // namespace fedge
