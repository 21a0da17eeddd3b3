#include "coordinator/model_state.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace fedge {
namespace {

constexpr char kMagic[8] = {'F', 'E', 'D', 'G', 'E', 'M', 'D', '1'};

void Put(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}
  bool U64(uint64_t* v) {
    if (in_.size() < 8) return false;
    *v = 0;
    for (int i = 0; i < 8; ++i) *v |= uint64_t{static_cast<uint8_t>(in_[i])} << (8 * i);
    in_.remove_prefix(8);
    return true;
  }
  bool Bytes(size_t n, std::string* out) {
    if (in_.size() < n) return false;
    out->assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool empty() const { return in_.empty(); }

 private:
  absl::string_view in_;
};

}  // namespace

int64_t ModelState::parameter_count() const {
  int64_t n = 0;
  for (const ModelShard& s : shards) n += static_cast<int64_t>(s.values.size());
  return n;
}

std::vector<ShardShape> ModelState::Shapes() const {
  std::vector<ShardShape> out;
  for (const ModelShard& s : shards) {
    out.push_back({s.name, static_cast<int64_t>(s.values.size())});
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

std::string SerializeModel(const ModelState& model) {
  std::string body;
  Put(&body, model.version);
  Put(&body, model.shards.size());
  for (const ModelShard& s : model.shards) {
    Put(&body, s.name.size());
    body += s.name;
    Put(&body, static_cast<uint64_t>(s.layer));
    Put(&body, s.shape.size());
    for (uint32_t d : s.shape) Put(&body, d);
    Put(&body, s.values.size());
    body.append(reinterpret_cast<const char*>(s.values.data()), 4 * s.values.size());
  }
  std::string out(kMagic, sizeof(kMagic));
  Put(&out, Fingerprint64(body));
  return out + body;
}

absl::StatusOr<ModelState> ParseModel(const std::string& bytes) {
  if (bytes.size() < 16 || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError("not a model file (bad magic)");
  }
  Reader header(absl::string_view(bytes).substr(8, 8));
  uint64_t fingerprint = 0;
  header.U64(&fingerprint);
  const absl::string_view body = absl::string_view(bytes).substr(16);
  if (Fingerprint64(body) != fingerprint) {
    return absl::DataLossError("model checksum mismatch: truncated or corrupt");
  }
  Reader in(body);
  ModelState model;
  uint64_t count = 0;
  if (!in.U64(&model.version) || !in.U64(&count) || count > (1u << 20)) {
    return absl::DataLossError("model header is truncated");
  }
  for (uint64_t k = 0; k < count; ++k) {
    ModelShard s;
    uint64_t name_size = 0, layer = 0, rank = 0, n = 0;
    if (!in.U64(&name_size) || name_size > 4096 || !in.Bytes(name_size, &s.name) ||
        !in.U64(&layer) || !in.U64(&rank) || rank > 8) {
      return absl::DataLossError(absl::StrCat("shard ", k, " header is truncated"));
    }
    s.layer = static_cast<int>(layer);
    uint64_t elements = 1;
    for (uint64_t d = 0; d < rank; ++d) {
      uint64_t dim = 0;
      if (!in.U64(&dim) || dim > (1u << 31)) return absl::DataLossError("bad shard shape");
      s.shape.push_back(static_cast<uint32_t>(dim));
      elements *= dim;
    }
    std::string raw;
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
