#include "coordinator/sender.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/io/log_text.h"
#include "common/status/reject_reason.h"

namespace fedge {

absl::Status CheckSender(const Packet& packet, const Message& message) {
  const std::string route_device = DeviceOfRoute(packet.peer);
  if (!packet.authenticated_id.empty() &&
      (message.device_id != packet.authenticated_id || route_device != packet.authenticated_id)) {
    return WithReason(absl::PermissionDeniedError(absl::StrCat(
                          "key enrolled as '", packet.authenticated_id, "' sent a message for '",
                          message.device_id, "' from connection '", LogText(packet.peer), "'")),
                      RejectReason::kIdentityMismatch);
  }
  if (message.device_id != route_device) {
    return WithReason(absl::PermissionDeniedError(absl::StrCat(
                          "device id '", message.device_id, "' does not match the connection's '",
                          LogText(packet.peer), "'")),
                      RejectReason::kIdentityMismatch);
  }
  return absl::OkStatus();
}

}  // namespace fedge
