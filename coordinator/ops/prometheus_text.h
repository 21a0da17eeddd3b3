#ifndef FEDGE_COMMON_PROMETHEUS_TEXT_H_
#define FEDGE_COMMON_PROMETHEUS_TEXT_H_

// Reads the Prometheus text exposition format (version 0.0.4): one sample
// per line, `name{label="value",...} value [timestamp]`, with `#` comments.
// Used by the status command and by tests of the metrics endpoint.
//
//   ASSIGN_OR_RETURN(std::vector<PromSample> samples, ParsePrometheusText(body));
//   std::optional<double> live = FindSample(samples, "fedge_agents_live");

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fedge {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Fails on the first malformed line, naming it.
absl::StatusOr<std::vector<PromSample>> ParsePrometheusText(const std::string& text);

// The value of the first sample named `name` whose labels include `labels`.
std::optional<double> FindSample(const std::vector<PromSample>& samples, const std::string& name,
                                 const std::map<std::string, std::string>& labels = {});

}  // namespace fedge

#endif  // FEDGE_COMMON_PROMETHEUS_TEXT_H_
