#ifndef FEDGE_COMMON_STATS_SUMMARY_H_
#define FEDGE_COMMON_STATS_SUMMARY_H_

// Mean and sample standard deviation of repeated measurements (benchmarks
// that run each point over several seeds). Pure; thread-safe.

#include <vector>

namespace fedge {

struct MeanSd {
  double mean = 0;
  double sd = 0;  // sample standard deviation (n - 1); 0 for fewer than two values
};

MeanSd Summarize(const std::vector<double>& values);

}  // namespace fedge

#endif  // FEDGE_COMMON_STATS_SUMMARY_H_
