#include "common/status/reject_reason.h"

#include <string>

#include "absl/strings/cord.h"

namespace fedge {
namespace {
constexpr char kPayloadUrl[] = "type.fedge/RejectReason";
}  // namespace

const char* ReasonLabel(RejectReason reason) {
  switch (reason) {
    case RejectReason::kMalformedMessage: return "malformed_message";
    case RejectReason::kIdentityMismatch: return "identity_mismatch";
    case RejectReason::kRegistration: return "registration";
    case RejectReason::kUnknownSession: return "unknown_session";
    case RejectReason::kNotForCoordinator: return "not_for_coordinator";
    case RejectReason::kWrongAgent: return "wrong_agent";
    case RejectReason::kDuplicate: return "duplicate";
    case RejectReason::kOutsideRound: return "outside_round";
    case RejectReason::kNonFinite: return "non_finite";
    case RejectReason::kTooLarge: return "too_large";
    case RejectReason::kNormBound: return "norm_bound";
    case RejectReason::kMalformedUpdate: return "malformed_update";
    case RejectReason::kRateLimited: return "rate_limited";
    case RejectReason::kWrongRole: return "wrong_role";
  }
  return "malformed_update";
}

absl::Status WithReason(absl::Status status, RejectReason reason) {
  if (status.ok()) return status;
  status.SetPayload(kPayloadUrl, absl::Cord(std::string(1, static_cast<char>(reason))));
  return status;
}

RejectReason ReasonOf(const absl::Status& status, RejectReason otherwise) {
  const absl::optional<absl::Cord> payload = status.GetPayload(kPayloadUrl);
  if (!payload || payload->size() != 1) return otherwise;
  const int value = static_cast<unsigned char>(std::string(*payload)[0]);
  for (RejectReason r : kAllRejectReasons) {
    if (static_cast<int>(r) == value) return r;
  }
  return otherwise;
}

}  // namespace fedge
