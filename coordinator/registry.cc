#include "coordinator/registry.h"

#include <sys/random.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace fedge {

Registry::Registry(const RegistryOptions& options)
    : options_(options), sessions_(options.session_seed) {}

uint64_t Registry::NewSessionId() {
  // From the kernel's CSPRNG: a generator like mt19937 could be predicted
  // by a device that registers a few hundred times and watches its own ids.
  uint64_t id = 0;
  if (options_.session_seed != 0 || getrandom(&id, sizeof(id), 0) != sizeof(id)) {
    id = sessions_();
  }
  return id;
}

absl::StatusOr<Welcome> Registry::OnRegister(const std::string& device_id,
                                             const std::string& authenticated_id,
                                             const Register& registration,
                                             absl::Time now, const std::string& route) {
  if (!authenticated_id.empty() && authenticated_id != device_id) {
    return absl::PermissionDeniedError(absl::StrCat(
        "key enrolled as '", authenticated_id, "' tried to register as '", device_id, "'"));
  }
  const bool known = agents_.count(device_id) != 0;
  AgentRecord& record = agents_[device_id];
  record.device_id = device_id;
  record.registration = registration;
  uint64_t session = 0;
  while (session == 0 || session == record.session_id) session = NewSessionId();
  record.session_id = session;
  record.route = route.empty() ? device_id : route;
  record.registered_at = now;
  record.last_seen = now;
  if (!record.live || !known) ++live_;
  record.live = true;
  record.busy_task = 0;
  record.relay = registration.relay.has_value();
  record.relay_load = registration.relay.value_or(RelayLoad());
  if (record.relay && std::find(relays_.begin(), relays_.end(), device_id) == relays_.end()) {
    relays_.push_back(device_id);
  }
  Welcome welcome;
  welcome.session_id = record.session_id;
  welcome.heartbeat_interval_ms =
      static_cast<uint32_t>(absl::ToInt64Milliseconds(options_.heartbeat_interval));
  return welcome;
}

absl::Status Registry::OnHeard(const std::string& device_id, uint64_t session_id,
                               absl::Time now) {
  auto it = agents_.find(device_id);
  if (it == agents_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown device '", device_id, "': register first"));
  }
  if (it->second.session_id != session_id) {
    return absl::NotFoundError(absl::StrCat("session ", session_id, " of '", device_id,
                                            "' is not current: register again"));
  }
  it->second.last_seen = now;
  if (!it->second.live) ++live_;
  it->second.live = true;
  return absl::OkStatus();
}

absl::Status Registry::OnHeartbeat(const std::string& device_id, uint64_t session_id,
                                   const Heartbeat& heartbeat, absl::Time now) {
  absl::Status status = OnHeard(device_id, session_id, now);
  if (!status.ok()) return status;
  AgentRecord& record = agents_[device_id];
  record.busy_task = heartbeat.busy_task;
  if (record.relay && heartbeat.relay) {
    record.relay_load = *heartbeat.relay;
    record.registration.samples = heartbeat.relay->samples;
    if (heartbeat.relay->min_memory_bytes > 0) {
      record.registration.memory_budget_bytes = heartbeat.relay->min_memory_bytes;
    }
  }
  return status;
}

size_t Registry::live_agents() const {
  size_t count = live_;
  for (const std::string& id : relays_) {
    const AgentRecord& record = agents_.at(id);
    if (record.live && record.relay) count = count - 1 + record.relay_load.agents;
  }
  return count;
}

std::vector<std::string> Registry::Expire(absl::Time now) {
  std::vector<std::string> dead;
  if (now < next_sweep_) return dead;
  next_sweep_ = now + options_.timeout / 8;
  for (auto& [id, record] : agents_) {
    if (record.live && now - record.last_seen > options_.timeout) {
      record.live = false;
      --live_;
      dead.push_back(id);
    }
  }
  return dead;
}

const AgentRecord* Registry::Find(const std::string& device_id) const {
  auto it = agents_.find(device_id);
  return it == agents_.end() ? nullptr : &it->second;
}

std::vector<const AgentRecord*> Registry::LiveAgents() const {
  std::vector<const AgentRecord*> live;
  for (const auto& [id, record] : agents_) {
    if (record.live) live.push_back(&record);
  }
  return live;
}


}  // namespace fedge
