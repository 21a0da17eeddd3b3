#include "models/data/partition.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"

namespace fedge {

absl::StatusOr<PartitionSpec> ParsePartition(const std::string& text, int agents,
                                             uint64_t seed) {
  PartitionSpec spec;
  spec.agents = agents;
  spec.seed = seed;
  if (agents < 1) return absl::InvalidArgumentError("need at least one agent");
  if (text == "iid") {
    spec.iid = true;
    return spec;
  }
  if (absl::StartsWith(text, "dirichlet:") &&
      absl::SimpleAtod(text.substr(10), &spec.alpha) && spec.alpha > 0 &&
      std::isfinite(spec.alpha)) {
    return spec;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "partition '", text, "' is not 'iid' or 'dirichlet:ALPHA' with ALPHA > 0"));
}

absl::StatusOr<std::vector<std::vector<int64_t>>> Partition(const std::vector<int>& labels,
                                                             int num_classes,
                                                             const PartitionSpec& spec) {
  const int64_t n = static_cast<int64_t>(labels.size());
  if (spec.agents < 1 || n < spec.agents) {
    return absl::InvalidArgumentError(
        absl::StrCat(n, " samples cannot be split across ", spec.agents, " agents"));
  }
  std::mt19937_64 rng(spec.seed);
  std::vector<std::vector<int64_t>> parts(spec.agents);
  if (spec.iid) {
    std::vector<int64_t> order(n);
    for (int64_t i = 0; i < n; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    for (int64_t i = 0; i < n; ++i) parts[i % spec.agents].push_back(order[i]);
    return parts;
  }
  std::vector<std::vector<int64_t>> by_class(num_classes);
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      return absl::InvalidArgumentError(absl::StrCat("label ", labels[i], " at ", i));
    }
    by_class[labels[i]].push_back(i);
  }
  std::gamma_distribution<double> gamma(spec.alpha, 1.0);
  for (std::vector<int64_t>& members : by_class) {
    std::shuffle(members.begin(), members.end(), rng);
    // Proportions ~ Dirichlet(alpha) over agents, via normalised gammas.
    std::vector<double> p(spec.agents);
    double total = 0;
    for (double& v : p) total += (v = gamma(rng) + 1e-12);
    size_t start = 0;
    double cumulative = 0;
    for (int a = 0; a < spec.agents; ++a) {
      cumulative += p[a] / total;
      const size_t end = a + 1 == spec.agents
                             ? members.size()
                             : static_cast<size_t>(std::llround(cumulative * members.size()));
      for (size_t i = start; i < std::max(start, end); ++i) parts[a].push_back(members[i]);
      start = std::max(start, end);
    }
  }
  // Every agent needs data: give an empty one a sample from the largest.
  for (auto& part : parts) {
    if (!part.empty()) continue;
    auto largest = std::max_element(parts.begin(), parts.end(),
                                    [](const auto& a, const auto& b) { return a.size() < b.size(); });
    part.push_back(largest->back());
    largest->pop_back();
  }
  return parts;
}

}  // namespace fedge
