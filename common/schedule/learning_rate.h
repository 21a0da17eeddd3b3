#ifndef FEDGE_COMMON_SCHEDULE_LEARNING_RATE_H_
#define FEDGE_COMMON_SCHEDULE_LEARNING_RATE_H_

// Learning-rate schedules over a run: the coordinator scales each round's
// task learning rate by the factor of its round, a central trainer its
// step's. Constant keeps the factor 1; cosine decays it as
// 0.5 (1 + cos(pi t / T)) for t = 0 .. T-1, from 1 to just above 0, so the
// last rounds of a federated run (or the last steps of a central one) move
// the latent weights little and the averaged model settles.
// Pure; thread-safe.

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedge {

enum class LrSchedule : uint8_t { kConstant = 0, kCosine = 1 };

// The factor at position `t` of `total` (t clamped to [0, total - 1]; 1 for
// total < 1).
double LrFactor(LrSchedule schedule, int64_t t, int64_t total);

// "constant" or "cosine".
absl::StatusOr<LrSchedule> ParseLrSchedule(absl::string_view name);
const char* LrScheduleName(LrSchedule schedule);

}  // namespace fedge

#endif  // FEDGE_COMMON_SCHEDULE_LEARNING_RATE_H_
