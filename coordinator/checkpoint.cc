#include "coordinator/checkpoint.h"

#include "absl/strings/str_cat.h"
#include "common/io/byte_io.h"
#include "common/io/file_util.h"
#include "common/status/status_macros.h"

namespace fedge {
namespace {

constexpr char kMagic[8] = {'F', 'E', 'D', 'G', 'E', 'C', 'K', '1'};

}  // namespace

absl::Status WriteCheckpoint(const std::string& path, const Checkpoint& checkpoint, Env* env) {
  std::string body;
  PutU64(&body, checkpoint.completed_rounds);
  PutU64(&body, checkpoint.rng_state);
  PutU64(&body, checkpoint.known_agents.size());
  for (const std::string& id : checkpoint.known_agents) {
    PutU64(&body, id.size());
    body += id;
  }
  const std::string model = SerializeModel(checkpoint.model);
  PutU64(&body, model.size());
  body += model;
  return WriteFileAtomically(env, path, SealFile(absl::string_view(kMagic, sizeof(kMagic)), body));
}

absl::StatusOr<Checkpoint> ReadCheckpoint(const std::string& path, Env* env) {
  ASSIGN_OR_RETURN(const std::string file, env->ReadFile(path, int64_t{4} << 30));
  absl::string_view body;
  switch (OpenSealedFile(file, absl::string_view(kMagic, sizeof(kMagic)), &body)) {
    case SealCheck::kBadMagic:
      return absl::DataLossError(absl::StrCat(path, ": not a checkpoint"));
    case SealCheck::kBadChecksum:
      return absl::DataLossError(absl::StrCat(path, ": checksum mismatch (truncated or corrupt)"));
    case SealCheck::kOk:
      break;
  }
  ByteReader in(body);
  Checkpoint c;
  uint64_t agents = 0, model_size = 0;
  if (!in.U64(&c.completed_rounds) || !in.U64(&c.rng_state) || !in.U64(&agents) ||
      agents > 10'000'000) {
    return absl::DataLossError(absl::StrCat(path, ": truncated header"));
  }
  for (uint64_t i = 0; i < agents; ++i) {
    uint64_t size = 0;
    absl::string_view id;
    if (!in.U64(&size) || !in.Bytes(size, &id)) return absl::DataLossError("truncated agent id");
    c.known_agents.emplace_back(id);
  }
  absl::string_view model;
  if (!in.U64(&model_size) || model_size != in.size() || !in.Bytes(model_size, &model)) {
    return absl::DataLossError(absl::StrCat(path, ": model section has the wrong size"));
  }
  ASSIGN_OR_RETURN(c.model, ParseModel(std::string(model)));
  return c;
}

}  // namespace fedge
