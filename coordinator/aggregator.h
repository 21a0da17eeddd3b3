#ifndef FEDGE_COORDINATOR_AGGREGATOR_H_
#define FEDGE_COORDINATOR_AGGREGATOR_H_

// Aggregates one round's encoded updates per shard (design 4.3): each update
// is checked in full (well-formed, finite, within the magnitude bound, within
// the norm bound) and folded into a running weighted
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
// A result of several shards is all or nothing: Check every shard first,
// then AddChecked each (round_engine.cc does).
//
// Magnitude bound: an update value may be at most
// max_update_scale x max(1, the shard's largest |value|). With every folded
// value bounded, the aggregator also tracks the largest |sum| possible and
// refuses an update that could carry it past 1e37, so finite inputs never
// overflow into an infinity.
//
// Pure: no I/O, no clock. Not thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/wire/messages.h"

namespace fedge {

enum class AggregationRule { kFedAvg, kMedian, kTrimmedMean };

struct AggregatorOptions {
  AggregationRule rule = AggregationRule::kFedAvg;
  double trim_fraction = 0.1;    // trimmed mean: from each end
  double max_update_norm = 0;    // L2 bound per shard update; 0: none
  // Magnitude bound per update value, relative to the shard's scale (> 0).
  double max_update_scale = 100;
  double staleness_exponent = 0.5;  // weight *= (1 + staleness)^-exponent
};

struct ShardShape {
  std::string name;
  int64_t elements = 0;
  float scale = 0;  // the shard's largest |value| in the model
};

struct ShardResult {
  bool updated = false;  // at least one accepted update
  std::vector<float> delta;  // the aggregated update
  // Statistics shards under FedAvg: the weighted variance of the folded
  // updates per element (a relay's partial counts as one update), which
  // PoolStatistics (model_state.h) turns into pooled statistics; empty
  // otherwise.
  std::vector<float> spread;
  double total_weight = 0;
  int contributors = 0;
};

struct AggregatorStats {
  int64_t accepted = 0;
  int64_t rejected = 0;
  std::vector<std::string> rejections;  // "shard: reason", most recent last
};

// Whether a shard holds batch-norm statistics rather than trained
// parameters ("<layer>.running_mean", ".running_var", ".running_sigma").
bool IsStatisticsShard(const std::string& name);

class Aggregator {
 public:
  Aggregator(std::vector<ShardShape> shards, const AggregatorOptions& options);

  // Folds one agent's update of shard `shard` in with weight
  // samples * (1 + staleness)^-exponent. A malformed, non-finite or
  // over-norm update is rejected with a status naming why, and leaves the
  // aggregate exactly as it was.
  absl::Status Add(int shard, const WireTensor& update, uint64_t samples,
                   int64_t staleness = 0);

  // Everything Add checks, the aggregate untouched; errors carry a
  // RejectReason. Not const: it may decode into the scratch buffer.
  absl::Status Check(int shard, const WireTensor& update, uint64_t samples,
                     int64_t staleness = 0);
  // Folds an update that passed Check with the same arguments.
  absl::Status AddChecked(int shard, const WireTensor& update, uint64_t samples,
                          int64_t staleness = 0);

  // A relay's partial for `shard` (design 4.6): `update` is its agents'
  // updates combined (their sample-weighted mean under FedAvg, the rule's
  // statistic over them under a robust rule) and `weight` the samples
  // behind it. Checked like an agent's update, the norm bound only under
  // FedAvg (a mean of updates within the bound is within it; under a robust
  // rule the relay applies the bound to each agent). Under FedAvg a partial
  // folds as its weight's worth of samples, so a tree aggregates exactly as
  // if every agent had reported here; under a robust rule the partials and
  // the rule's statistic over the agents reporting here directly are
  // averaged by weight.
  absl::Status CheckPartial(int shard, const WireTensor& update, double weight);
  absl::Status AddPartialChecked(int shard, const WireTensor& update, double weight);
  // One result's updates, all or nothing: each must name a known shard,
  // once, and pass Check (an agent's, with `samples` and `staleness`) or
  // CheckPartial (a relay's, with `partial_weights`, one per update); only
  // then is any of it folded. Returns the payload bytes folded; a refusal
  // names the shard and carries a RejectReason.
  absl::StatusOr<int64_t> AddResult(const std::vector<WireTensor>& updates, uint64_t samples,
                                    int64_t staleness,
                                    const std::vector<double>* partial_weights = nullptr);

  // The magnitude bound of `shard`'s update values.
  float MaxAbs(int shard) const;

  // The weighted mean (or robust statistic) per shard; shards nobody
  // updated come back with updated = false.
  std::vector<ShardResult> Finish();

  // Counts a rejected update in stats() (Add does this itself) and returns
  // `status`.
  absl::Status Reject(int shard, absl::Status status);

  const AggregatorStats& stats() const { return stats_; }
  size_t shard_count() const { return shards_.size(); }

 private:
  double Weight(uint64_t samples, int64_t staleness) const;
  absl::Status CheckWeighted(int shard, const WireTensor& update, double weight,
                             bool norm_bound);
  // FedAvg: adds weight x value^2 of a statistics shard's checked update.
  absl::Status AddSquares(int shard, const WireTensor& update, double weight);

  std::vector<ShardShape> shards_;
  AggregatorOptions options_;
  std::vector<std::vector<float>> sums_;             // FedAvg running sums
  std::vector<std::vector<std::vector<float>>> kept_;  // robust rules
  std::vector<double> weights_;
  // Robust rules: relays' partials, summed by weight beside the kept updates.
  std::vector<std::vector<float>> partial_sums_;
  std::vector<double> partial_weights_;
  std::vector<double> sum_bound_;  // the largest |sum| the folded updates allow
  std::vector<int> contributors_;
  // FedAvg, statistics shards only (empty for the rest): weighted sums of
  // squared updates.
  std::vector<std::vector<double>> square_sums_;
  std::vector<float> scratch_;
  AggregatorStats stats_;
};

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_AGGREGATOR_H_
