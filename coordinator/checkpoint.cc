#include "coordinator/checkpoint.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

constexpr char kMagic[8] = {'F', 'E', 'D', 'G', 'E', 'C', 'K', '1'};

void Put(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

bool Get(absl::string_view* in, uint64_t* v) {
  if (in->size() < 8) return false;
  *v = 0;
  for (int i = 0; i < 8; ++i) *v |= uint64_t{static_cast<uint8_t>((*in)[i])} << (8 * i);
  in->remove_prefix(8);
  return true;
}

}  // namespace

absl::Status WriteCheckpoint(const std::string& path, const Checkpoint& checkpoint) {
  std::string body;
  Put(&body, checkpoint.completed_rounds);
  Put(&body, checkpoint.rng_state);
  Put(&body, checkpoint.known_agents.size());
  for (const std::string& id : checkpoint.known_agents) {
    Put(&body, id.size());
    body += id;
  }
  const std::string model = SerializeModel(checkpoint.model);
  Put(&body, model.size());
  body += model;
  std::string file(kMagic, sizeof(kMagic));
  Put(&file, Fingerprint64(body));
  return WriteFileAtomically(path, file + body);
}

absl::StatusOr<Checkpoint> ReadCheckpoint(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string file, ReadFileToString(path, int64_t{4} << 30));
  if (file.size() < 16 || std::memcmp(file.data(), kMagic, 8) != 0) {
    return absl::DataLossError(absl::StrCat(path, ": not a checkpoint"));
  }
  absl::string_view header = absl::string_view(file).substr(8, 8);
  uint64_t fingerprint = 0;
  Get(&header, &fingerprint);
  absl::string_view in = absl::string_view(file).substr(16);
  if (Fingerprint64(in) != fingerprint) {
    return absl::DataLossError(absl::StrCat(path, ": checksum mismatch (truncated or corrupt)"));
  }
  Checkpoint c;
  uint64_t agents = 0, model_size = 0;
  if (!Get(&in, &c.completed_rounds) || !Get(&in, &c.rng_state) || !Get(&in, &agents) ||
      agents > 10'000'000) {
    return absl::DataLossError(absl::StrCat(path, ": truncated header"));
  }
  for (uint64_t i = 0; i < agents; ++i) {
    uint64_t size = 0;
    if (!Get(&in, &size) || size > in.size()) return absl::DataLossError("truncated agent id");
    c.known_agents.emplace_back(in.substr(0, size));
    in.remove_prefix(size);
  }
  if (!Get(&in, &model_size) || model_size != in.size()) {
    return absl::DataLossError(absl::StrCat(path, ": model section has the wrong size"));
  }
  ASSIGN_OR_RETURN(c.model, ParseModel(std::string(in)));
  return c;
}

}  // namespace fedge
