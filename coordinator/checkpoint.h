#ifndef FEDGE_COORDINATOR_CHECKPOINT_H_
#define FEDGE_COORDINATOR_CHECKPOINT_H_

// The coordinator's durable state after each aggregation (design 4.3): the
// model, the number of completed rounds (the schedule position), the round
// engine's random state and the registered agents. Written atomically
// (temporary file, fsync, rename); a restarted coordinator resumes from it.
// Thread-compatible.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/env/env.h"
#include "coordinator/model_state.h"

namespace fedge {

struct Checkpoint {
  ModelState model;
  uint64_t completed_rounds = 0;
  uint64_t rng_state = 0;
  std::vector<std::string> known_agents;
};

// All or nothing (common/env): on failure the last good checkpoint stays.
absl::Status WriteCheckpoint(const std::string& path, const Checkpoint& checkpoint,
                             Env* env = Env::Default());
// kNotFound when there is none; kDataLoss when it is truncated or corrupt.
absl::StatusOr<Checkpoint> ReadCheckpoint(const std::string& path, Env* env = Env::Default());

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_CHECKPOINT_H_
