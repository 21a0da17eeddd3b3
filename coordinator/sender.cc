#include "coordinator/sender.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/io/log_text.h"
#include "common/status/reject_reason.h"

namespace fedge {

bool SpeaksFor(const std::string& enrolled, const std::string& device_id, bool relay_pool) {
  if (device_id == enrolled) return true;
  return relay_pool && device_id.size() > enrolled.size() + 1 &&
         device_id.compare(0, enrolled.size(), enrolled) == 0 && device_id[enrolled.size()] == '.';
}

absl::Status CheckSender(const Packet& packet, const Message& message,
                         const std::set<std::string>* relay_ids) {
  const std::string route_device = DeviceOfRoute(packet.peer);
  const std::string& key_id = packet.authenticated_id;
  const bool pool = relay_ids != nullptr && relay_ids->count(key_id) != 0;
  if (!key_id.empty() && (!SpeaksFor(key_id, message.device_id, pool) ||
                          !SpeaksFor(key_id, route_device, pool))) {
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
