#ifndef FEDGE_COORDINATOR_AGGREGATOR_H_
#define FEDGE_COORDINATOR_AGGREGATOR_H_

// Aggregates one round's encoded updates per shard (design 4.3): each update
// is checked in full (finite, well-formed) and folded into a running weighted
// sum straight from its encoded bytes, so memory stays O(model) whatever the
// number of agents. With a norm bound, an update is first decoded into one
// scratch buffer of the shard's size to measure it. Weighted FedAvg by sample
// count, with an optional staleness discount for late results in the
// asynchronous mode. Coordinate-wise median and trimmed mean are offered as
// robust rules; they must keep every update of a shard (O(agents x shard)).
//
//   Aggregator agg({{"conv1.weight", 1728}, {"fc.weight", 5120}}, options);
//   RETURN_IF_ERROR(agg.Add(0, update, /*samples=*/600));
//   std::vector<ShardResult> deltas = agg.Finish();
//
// Pure: no I/O, no clock. Not thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/messages.h"

namespace fedge {

enum class AggregationRule { kFedAvg, kMedian, kTrimmedMean };

struct AggregatorOptions {
  AggregationRule rule = AggregationRule::kFedAvg;
  double trim_fraction = 0.1;    // trimmed mean: from each end
  double max_update_norm = 0;    // L2 bound per shard update; 0: none
  double staleness_exponent = 0.5;  // weight *= (1 + staleness)^-exponent
};

struct ShardShape {
  std::string name;
  int64_t elements = 0;
};

struct ShardResult {
  bool updated = false;  // at least one accepted update
  std::vector<float> delta;  // the aggregated update
  double total_weight = 0;
  int contributors = 0;
};

struct AggregatorStats {
  int64_t accepted = 0;
  int64_t rejected = 0;
  std::vector<std::string> rejections;  // "shard: reason", most recent last
};

class Aggregator {
 public:
  Aggregator(std::vector<ShardShape> shards, const AggregatorOptions& options);

  // Folds one agent's update of shard `shard` in with weight
  // samples * (1 + staleness)^-exponent. A malformed, non-finite or
  // over-norm update is rejected with a status naming why, and leaves the
  // aggregate exactly as it was.
  absl::Status Add(int shard, const WireTensor& update, uint64_t samples,
                   int64_t staleness = 0);

  // The weighted mean (or robust statistic) per shard; shards nobody
  // updated come back with updated = false.
  std::vector<ShardResult> Finish();

  const AggregatorStats& stats() const { return stats_; }
  size_t shard_count() const { return shards_.size(); }

 private:
  absl::Status Reject(int shard, absl::Status status);

  std::vector<ShardShape> shards_;
  AggregatorOptions options_;
  std::vector<std::vector<float>> sums_;             // FedAvg running sums
  std::vector<std::vector<std::vector<float>>> kept_;  // robust rules
  std::vector<double> weights_;
  std::vector<int> contributors_;
  std::vector<float> scratch_;
  AggregatorStats stats_;
};

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_AGGREGATOR_H_
