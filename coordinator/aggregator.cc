#include "coordinator/aggregator.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status/reject_reason.h"
#include "common/status/status_macros.h"
#include "common/codec/update_codec.h"

namespace fedge {

bool IsStatisticsShard(const std::string& name) {
  for (const char* suffix : {".running_mean", ".running_var", ".running_sigma"}) {
    if (absl::EndsWith(name, suffix)) return true;
  }
  return false;
}

Aggregator::Aggregator(std::vector<ShardShape> shards, const AggregatorOptions& options)
    : shards_(std::move(shards)),
      options_(options),
      sums_(shards_.size()),
      kept_(shards_.size()),
      weights_(shards_.size(), 0.0),
      partial_sums_(shards_.size()),
      partial_weights_(shards_.size(), 0.0),
      sum_bound_(shards_.size(), 0.0),
      contributors_(shards_.size(), 0),
      square_sums_(shards_.size()) {
  if (options_.rule != AggregationRule::kFedAvg) return;
  for (size_t s = 0; s < shards_.size(); ++s) {
    if (IsStatisticsShard(shards_[s].name)) square_sums_[s].assign(shards_[s].elements, 0.0);
  }
}

absl::Status Aggregator::Reject(int shard, absl::Status status) {
  ++stats_.rejected;
  const std::string name =
      shard >= 0 && shard < static_cast<int>(shards_.size()) ? shards_[shard].name : "?";
  stats_.rejections.push_back(absl::StrCat(name, ": ", status.message()));
  if (stats_.rejections.size() > 100) stats_.rejections.erase(stats_.rejections.begin());
  return status;
}

namespace {
// Past this a float sum could reach infinity within a few more folds.
constexpr double kSumLimit = 1e37;
}  // namespace

float Aggregator::MaxAbs(int shard) const {
  const double scale = std::max(1.0, static_cast<double>(shards_[shard].scale));
  return static_cast<float>(std::min(1e30, options_.max_update_scale * scale));
}

double Aggregator::Weight(uint64_t samples, int64_t staleness) const {
  return static_cast<double>(samples) *
         std::pow(1.0 + static_cast<double>(staleness), -options_.staleness_exponent);
}

absl::Status Aggregator::Check(int shard, const WireTensor& update, uint64_t samples,
                               int64_t staleness) {
  if (samples == 0 || staleness < 0) {
    return WithReason(absl::InvalidArgumentError(absl::StrCat(
                          "samples ", samples, " and staleness ", staleness,
                          " must be positive and non-negative")),
                      RejectReason::kMalformedUpdate);
  }
  return CheckWeighted(shard, update, Weight(samples, staleness), /*norm_bound=*/true);
}

absl::Status Aggregator::CheckPartial(int shard, const WireTensor& update, double weight) {
  if (!(weight > 0) || !std::isfinite(weight)) {
    return WithReason(absl::InvalidArgumentError(absl::StrCat(
                          "partial weight ", weight, " must be positive and finite")),
                      RejectReason::kMalformedUpdate);
  }
  return CheckWeighted(shard, update, weight, options_.rule == AggregationRule::kFedAvg);
}

absl::Status Aggregator::CheckWeighted(int shard, const WireTensor& update, double weight,
                                       bool norm_bound) {
  const RejectReason malformed = RejectReason::kMalformedUpdate;
  if (shard < 0 || shard >= static_cast<int>(shards_.size())) {
    return WithReason(absl::InvalidArgumentError(absl::StrCat(
                          "no shard ", shard, " in a model of ", shards_.size())),
                      malformed);
  }
  const ShardShape& shape = shards_[shard];
  if (update.numel() != shape.elements) {
    return WithReason(absl::InvalidArgumentError(absl::StrCat(
                          "update has ", update.numel(), " elements, shard has ", shape.elements)),
                      malformed);
  }
  const float max_abs = MaxAbs(shard);
  RETURN_IF_ERROR(CheckUpdate(update, max_abs));
  if (sum_bound_[shard] + weight * max_abs > kSumLimit) {
    return WithReason(absl::InvalidArgumentError(absl::StrCat(
                          "weight ", weight, " at magnitude bound ", max_abs,
                          " could overflow the aggregate")),
                      RejectReason::kTooLarge);
  }
  if (norm_bound && options_.max_update_norm > 0) {
    scratch_.resize(shape.elements);
    RETURN_IF_ERROR(DecodeTensor(update, absl::MakeSpan(scratch_)));
    // Four partial sums break the dependency chain.
    double partial[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < shape.elements; ++i) {
      partial[i & 3] += static_cast<double>(scratch_[i]) * scratch_[i];
    }
    const double norm = std::sqrt(partial[0] + partial[1] + partial[2] + partial[3]);
    if (!(norm <= options_.max_update_norm)) {
      return WithReason(absl::InvalidArgumentError(absl::StrCat(
                            "update norm ", norm, " exceeds the bound ", options_.max_update_norm)),
                        RejectReason::kNormBound);
    }
  }
  return absl::OkStatus();
}

absl::Status Aggregator::Add(int shard, const WireTensor& update, uint64_t samples,
                             int64_t staleness) {
  if (absl::Status s = Check(shard, update, samples, staleness); !s.ok()) return Reject(shard, s);
  return AddChecked(shard, update, samples, staleness);
}

absl::Status Aggregator::AddChecked(int shard, const WireTensor& update, uint64_t samples,
                                    int64_t staleness) {
  if (shard < 0 || shard >= static_cast<int>(shards_.size()) ||
      update.numel() != shards_[shard].elements) {
    return Reject(shard, absl::InternalError("folding an update that was not checked"));
  }
  const ShardShape& shape = shards_[shard];
  const double weight = Weight(samples, staleness);
  if (options_.rule == AggregationRule::kFedAvg) {
    // Straight from the encoded bytes, with no decoded copy.
    std::vector<float>& sum = sums_[shard];
    if (sum.empty()) sum.assign(shape.elements, 0.0f);
    RETURN_IF_ERROR(AccumulateChecked(update, static_cast<float>(weight), absl::MakeSpan(sum)));
    RETURN_IF_ERROR(AddSquares(shard, update, weight));
  } else {
    std::vector<float> decoded(shape.elements);
    RETURN_IF_ERROR(DecodeTensor(update, absl::MakeSpan(decoded)));
    kept_[shard].push_back(std::move(decoded));
  }
  sum_bound_[shard] += weight * MaxAbs(shard);
  weights_[shard] += weight;
  ++contributors_[shard];
  ++stats_.accepted;
  return absl::OkStatus();
}

absl::Status Aggregator::AddSquares(int shard, const WireTensor& update, double weight) {
  std::vector<double>& squares = square_sums_[shard];
  if (squares.empty()) return absl::OkStatus();  // not a statistics shard
  const int64_t n = shards_[shard].elements;
  scratch_.resize(n);
  RETURN_IF_ERROR(DecodeTensor(update, absl::MakeSpan(scratch_)));
  for (int64_t i = 0; i < n; ++i) squares[i] += weight * scratch_[i] * scratch_[i];
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Aggregator::AddResult(const std::vector<WireTensor>& updates,
                                               uint64_t samples, int64_t staleness,
                                               const std::vector<double>* partial_weights) {
  if (partial_weights != nullptr && partial_weights->size() != updates.size()) {
    return Reject(-1, WithReason(absl::InvalidArgumentError(absl::StrCat(
                                     partial_weights->size(), " partial weights for ",
                                     updates.size(), " updates")),
                                 RejectReason::kMalformedUpdate));
  }
  std::vector<int> shards;
  shards.reserve(updates.size());
  for (size_t u = 0; u < updates.size(); ++u) {
    const WireTensor& update = updates[u];
    int shard = -1;
    for (size_t s = 0; s < shards_.size(); ++s) {
      if (shards_[s].name == update.name) shard = static_cast<int>(s);
    }
    absl::Status checked;
    if (shard < 0) {
      checked = WithReason(
          absl::InvalidArgumentError(absl::StrCat("unknown shard '", update.name, "'")),
          RejectReason::kMalformedUpdate);
    } else if (std::find(shards.begin(), shards.end(), shard) != shards.end()) {
      checked = WithReason(
          absl::InvalidArgumentError(absl::StrCat("shard '", update.name, "' sent twice")),
          RejectReason::kMalformedUpdate);
    } else if (partial_weights != nullptr) {
      checked = CheckPartial(shard, update, (*partial_weights)[u]);
    } else {
      checked = Check(shard, update, samples, staleness);
    }
    if (!checked.ok()) {
      return Reject(shard, Annotate(checked, absl::StrCat("shard '", update.name, "'")));
    }
    shards.push_back(shard);
  }
  int64_t bytes = 0;
  for (size_t u = 0; u < shards.size(); ++u) {
    bytes += static_cast<int64_t>(updates[u].bytes().size());
    RETURN_IF_ERROR(partial_weights != nullptr
                        ? AddPartialChecked(shards[u], updates[u], (*partial_weights)[u])
                        : AddChecked(shards[u], updates[u], samples, staleness));
  }
  return bytes;
}

absl::Status Aggregator::AddPartialChecked(int shard, const WireTensor& update, double weight) {
  if (shard < 0 || shard >= static_cast<int>(shards_.size()) ||
      update.numel() != shards_[shard].elements) {
    return Reject(shard, absl::InternalError("folding a partial that was not checked"));
  }
  const bool fedavg = options_.rule == AggregationRule::kFedAvg;
  std::vector<float>& sum = fedavg ? sums_[shard] : partial_sums_[shard];
  if (sum.empty()) sum.assign(shards_[shard].elements, 0.0f);
  RETURN_IF_ERROR(AccumulateChecked(update, static_cast<float>(weight), absl::MakeSpan(sum)));
  if (fedavg) RETURN_IF_ERROR(AddSquares(shard, update, weight));
  (fedavg ? weights_ : partial_weights_)[shard] += weight;
  sum_bound_[shard] += weight * MaxAbs(shard);
  ++contributors_[shard];
  ++stats_.accepted;
  return absl::OkStatus();
}

std::vector<ShardResult> Aggregator::Finish() {
  std::vector<ShardResult> results(shards_.size());
  for (size_t s = 0; s < shards_.size(); ++s) {
    ShardResult& r = results[s];
    r.contributors = contributors_[s];
    r.total_weight = weights_[s] + partial_weights_[s];
    if (contributors_[s] == 0) continue;
    r.updated = true;
    const int64_t n = shards_[s].elements;
    r.delta.resize(n);
    if (options_.rule == AggregationRule::kFedAvg) {
      const double inverse = 1.0 / weights_[s];
      for (int64_t i = 0; i < n; ++i) r.delta[i] = static_cast<float>(sums_[s][i] * inverse);
      if (!square_sums_[s].empty()) {
        r.spread.resize(n);
        for (int64_t i = 0; i < n; ++i) {
          const double mean = sums_[s][i] * inverse;
          // Within [0, kSumLimit]: bounded values keep a finite spread.
          r.spread[i] = static_cast<float>(
              std::clamp(square_sums_[s][i] * inverse - mean * mean, 0.0, kSumLimit));
        }
      }
      continue;
    }
    const std::vector<std::vector<float>>& updates = kept_[s];
    const size_t k = updates.size();
    if (k == 0) {  // relays' partials only
      const double inverse = 1.0 / partial_weights_[s];
      for (int64_t i = 0; i < n; ++i) {
        r.delta[i] = static_cast<float>(partial_sums_[s][i] * inverse);
      }
      continue;
    }
    const size_t trim = options_.rule == AggregationRule::kTrimmedMean
                            ? std::min((k - 1) / 2, static_cast<size_t>(options_.trim_fraction * k))
                            : 0;
    std::vector<float> column(k);
    for (int64_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < k; ++j) column[j] = updates[j][i];
      std::sort(column.begin(), column.end());
      if (options_.rule == AggregationRule::kMedian) {
        r.delta[i] = k % 2 ? column[k / 2] : 0.5f * (column[k / 2 - 1] + column[k / 2]);
      } else {
        double sum = 0;
        for (size_t j = trim; j < k - trim; ++j) sum += column[j];
        r.delta[i] = static_cast<float>(sum / (k - 2 * trim));
      }
    }
    if (partial_weights_[s] > 0) {
      // The statistic over the direct agents counts as their weight's worth.
      const double direct = weights_[s], inverse = 1.0 / (weights_[s] + partial_weights_[s]);
      for (int64_t i = 0; i < n; ++i) {
        r.delta[i] = static_cast<float>((r.delta[i] * direct + partial_sums_[s][i]) * inverse);
      }
    }
  }
  return results;
}

}  // namespace fedge
