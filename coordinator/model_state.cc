#include "coordinator/model_state.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/io/byte_io.h"
#include "common/io/file_util.h"

namespace fedge {
namespace {

constexpr char kMagic[8] = {'F', 'E', 'D', 'G', 'E', 'M', 'D', '1'};

}  // namespace

int64_t ModelState::parameter_count() const {
  int64_t n = 0;
  for (const ModelShard& s : shards) n += static_cast<int64_t>(s.values.size());
  return n;
}

std::vector<ShardShape> ModelState::Shapes() const {
  std::vector<ShardShape> out;
  for (const ModelShard& s : shards) {
    float scale = 0;
    for (float v : s.values) scale = std::max(scale, std::fabs(v));
    out.push_back({s.name, static_cast<int64_t>(s.values.size()), scale});
  }
  return out;
}

absl::Status ModelState::Apply(const std::vector<ShardResult>& deltas) {
  if (deltas.size() != shards.size()) {
    return absl::InvalidArgumentError(absl::StrCat(deltas.size(), " deltas for ",
                                                   shards.size(), " shards"));
  }
  for (size_t s = 0; s < shards.size(); ++s) {
    if (!deltas[s].updated) continue;
    if (deltas[s].delta.size() != shards[s].values.size()) {
      return absl::InvalidArgumentError(absl::StrCat("delta of ", shards[s].name, " has ",
                                                     deltas[s].delta.size(), " elements"));
    }
    for (size_t i = 0; i < deltas[s].delta.size(); ++i) {
      if (!std::isfinite(shards[s].values[i] + deltas[s].delta[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("applying the delta of ", shards[s].name, " overflows"));
      }
    }
  }
  for (size_t s = 0; s < shards.size(); ++s) {
    if (!deltas[s].updated) continue;
    for (size_t i = 0; i < deltas[s].delta.size(); ++i) shards[s].values[i] += deltas[s].delta[i];
  }
  ++version;
  return absl::OkStatus();
}

void PoolStatistics(const ModelState& model, std::vector<ShardResult>* deltas) {
  if (deltas->size() != model.shards.size()) return;
  auto index_of = [&model](const std::string& name) {
    for (size_t s = 0; s < model.shards.size(); ++s) {
      if (model.shards[s].name == name) return static_cast<int>(s);
    }
    return -1;
  };
  auto has_spread = [&](int s) {
    return s >= 0 && (*deltas)[s].updated &&
           (*deltas)[s].spread.size() == model.shards[s].values.size();
  };
  for (size_t s = 0; s < model.shards.size(); ++s) {
    const std::string& name = model.shards[s].name;
    const bool var = absl::EndsWith(name, ".running_var");
    if (!var && !absl::EndsWith(name, ".running_sigma")) continue;
    const int mean = index_of(name.substr(0, name.rfind('.')) + ".running_mean");
    if (!has_spread(static_cast<int>(s)) || !has_spread(mean) ||
        model.shards[mean].values.size() != model.shards[s].values.size()) {
      continue;
    }
    const std::vector<float>& between = (*deltas)[mean].spread;
    ShardResult& r = (*deltas)[s];
    for (size_t i = 0; i < r.delta.size(); ++i) {
      if (var) {
        r.delta[i] += between[i];
        continue;
      }
      const double base = model.shards[s].values[i];
      const double averaged = base + r.delta[i];
      const double pooled =
          std::sqrt(averaged * averaged + r.spread[i] + (2.0 / M_PI) * between[i]);
      r.delta[i] = static_cast<float>(pooled - base);
    }
  }
}

std::string SerializeModel(const ModelState& model) {
  std::string body;
  PutU64(&body, model.version);
  PutU64(&body, model.shards.size());
  for (const ModelShard& s : model.shards) {
    PutU64(&body, s.name.size());
    body += s.name;
    PutU64(&body, static_cast<uint64_t>(s.layer));
    PutU64(&body, s.shape.size());
    for (uint32_t d : s.shape) PutU64(&body, d);
    PutU64(&body, s.values.size());
    body.append(reinterpret_cast<const char*>(s.values.data()), 4 * s.values.size());
  }
  return SealFile(absl::string_view(kMagic, sizeof(kMagic)), body);
}

absl::StatusOr<ModelState> ParseModel(const std::string& bytes) {
  absl::string_view body;
  switch (OpenSealedFile(bytes, absl::string_view(kMagic, sizeof(kMagic)), &body)) {
    case SealCheck::kBadMagic:
      return absl::DataLossError("not a model file (bad magic)");
    case SealCheck::kBadChecksum:
      return absl::DataLossError("model checksum mismatch: truncated or corrupt");
    case SealCheck::kOk:
      break;
  }
  ByteReader in(body);
  ModelState model;
  uint64_t count = 0;
  if (!in.U64(&model.version) || !in.U64(&count) || count > (1u << 20)) {
    return absl::DataLossError("model header is truncated");
  }
  for (uint64_t k = 0; k < count; ++k) {
    ModelShard s;
    uint64_t name_size = 0, layer = 0, rank = 0, n = 0;
    absl::string_view name;
    if (!in.U64(&name_size) || name_size > 4096 || !in.Bytes(name_size, &name) ||
        !in.U64(&layer) || !in.U64(&rank) || rank > 8) {
      return absl::DataLossError(absl::StrCat("shard ", k, " header is truncated"));
    }
    s.name = std::string(name);
    s.layer = static_cast<int>(layer);
    uint64_t elements = 1;
    for (uint64_t d = 0; d < rank; ++d) {
      uint64_t dim = 0;
      if (!in.U64(&dim) || dim > (1u << 31)) return absl::DataLossError("bad shard shape");
      s.shape.push_back(static_cast<uint32_t>(dim));
      elements *= dim;
    }
    absl::string_view raw;
    if (!in.U64(&n) || n != elements || n > (uint64_t{1} << 30) || !in.Bytes(4 * n, &raw)) {
      return absl::DataLossError(absl::StrCat("shard ", s.name, " values are truncated"));
    }
    s.values.resize(n);
    std::memcpy(s.values.data(), raw.data(), raw.size());
    model.shards.push_back(std::move(s));
  }
  if (!in.empty()) return absl::DataLossError("trailing bytes after the model");
  return model;
}

}  // namespace fedge
