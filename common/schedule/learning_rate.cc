#include "common/schedule/learning_rate.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace fedge {

double LrFactor(LrSchedule schedule, int64_t t, int64_t total) {
  if (schedule == LrSchedule::kConstant || total < 1) return 1.0;
  const double position = static_cast<double>(std::clamp<int64_t>(t, 0, total - 1)) / total;
  return 0.5 * (1.0 + std::cos(M_PI * position));
}

absl::StatusOr<LrSchedule> ParseLrSchedule(absl::string_view name) {
  if (name == "constant") return LrSchedule::kConstant;
  if (name == "cosine") return LrSchedule::kCosine;
  return absl::InvalidArgumentError(
      absl::StrCat("learning-rate schedule '", name, "': expected constant or cosine"));
}

const char* LrScheduleName(LrSchedule schedule) {
  return schedule == LrSchedule::kCosine ? "cosine" : "constant";
}

}  // namespace fedge
