#include "coordinator/agent_desk.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/wire/wire_codec.h"
#include "coordinator/sender.h"

namespace fedge {

void HandleAgentMessage(const Packet& p, absl::Time now, Registry& registry,
                        const std::set<std::string>* relay_ids, const AgentDeskHooks& hooks,
                        int64_t* malformed) {
  absl::StatusOr<Message> m = DecodeMessage(p.frames);
  if (!m.ok()) {
    ++*malformed;
    hooks.refuse(p.peer, RejectReason::kMalformedMessage, std::string(m.status().message()));
    return;
  }
  if (absl::Status sender = CheckSender(p, *m, relay_ids); !sender.ok()) {
    hooks.refuse(p.peer, RejectReason::kIdentityMismatch, std::string(sender.message()));
    return;
  }
  const std::string& device = m->device_id;  // checked: [A-Za-z0-9._:-]{1,64}
  if (const auto* reg = std::get_if<Register>(&m->body)) {
    hooks.on_register(p, *m, *reg);
    return;
  }
  const AgentRecord* agent = registry.Find(device);
  if (agent == nullptr) {
    hooks.refuse(p.peer, RejectReason::kUnknownSession,
                 absl::StrCat("unknown device '", device, "': register first"));
    return;
  }
  const bool current = agent->session_id == m->session_id;
  if (current) (void)registry.OnHeard(device, m->session_id, now);
  if (const auto* result = std::get_if<TaskResult>(&m->body)) {
    hooks.on_result(p.peer, *m, *result);
    return;
  }
  if (const auto* failed = std::get_if<TaskFailed>(&m->body)) {
    hooks.on_failed(device, *failed);
    return;
  }
  if (!current) {
    hooks.refuse(p.peer, RejectReason::kUnknownSession,
                 absl::StrCat("session ", m->session_id, " of '", device,
                              "' is not current: register again"));
    return;
  }
  if (const auto* hb = std::get_if<Heartbeat>(&m->body)) {
    (void)registry.OnHeartbeat(device, m->session_id, *hb, now);
    hooks.send(p.peer, m->session_id, NoTask{1000});
  } else {
    hooks.refuse(p.peer, RejectReason::kNotForCoordinator,
                 absl::StrCat(BodyName(m->body), " is not a message an agent sends"));
  }
}

}  // namespace fedge
