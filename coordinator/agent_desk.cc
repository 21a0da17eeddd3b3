#include "coordinator/agent_desk.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/wire/wire_codec.h"
#include "coordinator/sender.h"

namespace fedge {

void AgentDesk::HandleAgentMessage(const Packet& p, absl::Time now, Registry& registry,
                                   const std::set<std::string>* relay_ids, int64_t* malformed) {
  absl::StatusOr<Message> m = DecodeMessage(p.frames);
  if (!m.ok()) {
    ++*malformed;
    Refuse(p.peer, RejectReason::kMalformedMessage, std::string(m.status().message()), now);
    return;
  }
  if (absl::Status sender = CheckSender(p, *m, relay_ids); !sender.ok()) {
    Refuse(p.peer, RejectReason::kIdentityMismatch, std::string(sender.message()), now);
    return;
  }
  const std::string& device = m->device_id;  // checked: [A-Za-z0-9._:-]{1,64}
  if (const auto* reg = std::get_if<Register>(&m->body)) {
    OnRegister(p, *m, *reg, now);
    return;
  }
  const AgentRecord* agent = registry.Find(device);
  if (agent == nullptr) {
    Refuse(p.peer, RejectReason::kUnknownSession,
                 absl::StrCat("unknown device '", device, "': register first"), now);
    return;
  }
  const bool current = agent->session_id == m->session_id;
  if (current) (void)registry.OnHeard(device, m->session_id, now);
  if (const auto* result = std::get_if<TaskResult>(&m->body)) {
    OnResult(p.peer, *m, *result);
    return;
  }
  if (const auto* failed = std::get_if<TaskFailed>(&m->body)) {
    OnFailed(device, *failed);
    return;
  }
  if (!current) {
    Refuse(p.peer, RejectReason::kUnknownSession,
                 absl::StrCat("session ", m->session_id, " of '", device,
                              "' is not current: register again"), now);
    return;
  }
  if (const auto* hb = std::get_if<Heartbeat>(&m->body)) {
    (void)registry.OnHeartbeat(device, m->session_id, *hb, now);
    SendToAgent(p.peer, m->session_id, NoTask{1000});
  } else {
    Refuse(p.peer, RejectReason::kNotForCoordinator,
                 absl::StrCat(BodyName(m->body), " is not a message an agent sends"), now);
  }
}

}  // namespace fedge
