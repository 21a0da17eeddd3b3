#ifndef FEDGE_COMMON_REJECT_REASON_H_
#define FEDGE_COMMON_REJECT_REASON_H_

// Why a message or a result was turned away, as a type rather than as words:
// the code that finds the fault tags its Status with a RejectReason, and the
// service counts it under the reason's stable label (the metrics' `reason`),
// so rewording an error message never moves a count.
//
//   return WithReason(absl::InvalidArgumentError("element 7 is not finite"),
//                     RejectReason::kNonFinite);
//   ...
//   counters[ReasonLabel(ReasonOf(status))]++;   // "non_finite"
//
// Thread-compatible.

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace fedge {

enum class RejectReason {
  kMalformedMessage,   // the frames do not decode
  kIdentityMismatch,   // device id, key or routing id disagree
  kRegistration,       // Register refused
  kUnknownSession,     // not the device's current session
  kNotForCoordinator,  // a message only the coordinator sends
  kWrongAgent,         // the task was given to another device
  kDuplicate,          // the task already reported
  kOutsideRound,       // no such task in the round (late, or unknown)
  kNonFinite,          // a NaN or an infinity in an update
  kTooLarge,           // an update value beyond the model's scale
  kNormBound,          // an update over the L2 bound
  kMalformedUpdate,    // shapes, codecs, shards that do not fit the model
  kRateLimited,        // a peer past its allowance of refused messages
  kWrongRole,          // an agent's key registering as a relay, or the reverse
};

inline constexpr RejectReason kAllRejectReasons[] = {
    RejectReason::kMalformedMessage, RejectReason::kIdentityMismatch,
    RejectReason::kRegistration,     RejectReason::kUnknownSession,
    RejectReason::kNotForCoordinator, RejectReason::kWrongAgent,
    RejectReason::kDuplicate,        RejectReason::kOutsideRound,
    RejectReason::kNonFinite,        RejectReason::kTooLarge,
    RejectReason::kNormBound,        RejectReason::kMalformedUpdate,
    RejectReason::kRateLimited,      RejectReason::kWrongRole};

// "non_finite", "norm_bound", ...
const char* ReasonLabel(RejectReason reason);

// `status` tagged with `reason` (an OK status stays OK, untagged).
absl::Status WithReason(absl::Status status, RejectReason reason);
// The tag, or `otherwise` when there is none.
RejectReason ReasonOf(const absl::Status& status,
                      RejectReason otherwise = RejectReason::kMalformedUpdate);

}  // namespace fedge

#endif  // FEDGE_COMMON_REJECT_REASON_H_
