// The agent session against the coordinator's registry, over the in-memory
// transport and the real wire codec, with a fake clock: registration,
// heartbeats, a coordinator restart, a coordinator that goes silent, and an
// agent that stops heartbeating.

#include "device_agent/session.h"

#include <memory>
#include <string>

#include "common/in_memory_transport.h"
#include "common/wire_codec.h"
#include "coordinator/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

// A minimal coordinator loop around the registry: answers Register with
// Welcome, heartbeats with NoTask, anything from an unknown session with
// Reject.
class StubCoordinator {
 public:
  StubCoordinator(InMemoryNetwork* net, RegistryOptions options)
      : transport_(net->Bind()), registry_(options) {}

  void Pump(absl::Time now) {
    while (true) {
      auto packet = transport_->Receive(absl::ZeroDuration());
      ASSERT_TRUE(packet.ok());
      if (!packet->has_value()) return;
      absl::StatusOr<Message> m = DecodeMessage((*packet)->frames);
      ASSERT_TRUE(m.ok()) << m.status();
      Body reply;
      if (const auto* reg = std::get_if<Register>(&m->body)) {
        absl::StatusOr<Welcome> w =
            registry_.OnRegister(m->device_id, (*packet)->authenticated_id, *reg, now);
        reply = w.ok() ? Body(*w) : Body(Reject{std::string(w.status().message())});
      } else if (const auto* hb = std::get_if<Heartbeat>(&m->body)) {
        absl::Status s = registry_.OnHeartbeat(m->device_id, m->session_id, *hb, now);
        reply = s.ok() ? Body(NoTask{1000}) : Body(Reject{std::string(s.message())});
      } else {
        continue;
      }
      if (silent_) continue;
      Message out;
      out.device_id = m->device_id;
      out.session_id = registry_.Find(m->device_id) ? registry_.Find(m->device_id)->session_id : 0;
      out.body = reply;
      auto frames = EncodeMessage(out);
      ASSERT_TRUE(frames.ok());
      Packet p;
      p.peer = (*packet)->peer;
      p.frames = *frames;
      ASSERT_TRUE(transport_->Send(std::move(p)).ok());
    }
  }

  Registry& registry() { return registry_; }
  void set_silent(bool silent) { silent_ = silent; }

 private:
  std::unique_ptr<Transport> transport_;
  Registry registry_;
  bool silent_ = false;
};

class Agent {
 public:
  Agent(InMemoryNetwork* net, const std::string& id)
      : transport_(net->Connect(id)), session_(Options(id)) {}

  static SessionOptions Options(const std::string& id) {
    SessionOptions options;
    options.device_id = id;
    options.registration = Register{64 << 20, 2, 600, "test"};
    options.register_retry = absl::Seconds(1);
    options.coordinator_timeout = absl::Seconds(5);
    return options;
  }

  void Step(absl::Time now) {
    for (Message& m : session_.OnTick(now)) Send(m);
    while (true) {
      auto packet = transport_->Receive(absl::ZeroDuration());
      ASSERT_TRUE(packet.ok());
      if (!packet->has_value()) break;
      absl::StatusOr<Message> m = DecodeMessage((*packet)->frames);
      ASSERT_TRUE(m.ok()) << m.status();
      for (Message& out : session_.OnMessage(*m, now)) Send(out);
    }
  }

  AgentSession& session() { return session_; }

 private:
  void Send(const Message& m) {
    auto frames = EncodeMessage(m);
    ASSERT_TRUE(frames.ok()) << frames.status();
    Packet p;
    p.frames = *frames;
    ASSERT_TRUE(transport_->Send(std::move(p)).ok());
  }

  std::unique_ptr<Transport> transport_;
  AgentSession session_;
};

RegistryOptions Liveness() {
  RegistryOptions options;
  options.heartbeat_interval = absl::Seconds(1);
  options.timeout = absl::Seconds(4);
  return options;
}

// Advances the fake clock in 100 ms steps, letting both sides act.
void RunFor(absl::Time* now, absl::Duration span, Agent& agent, StubCoordinator& coordinator,
         bool agent_alive = true) {
  for (absl::Time end = *now + span; *now < end; *now += absl::Milliseconds(100)) {
    if (agent_alive) agent.Step(*now);
    coordinator.Pump(*now);
    if (agent_alive) agent.Step(*now);
  }
}

TEST(SessionTest, RegistersThenHeartbeats) {
  InMemoryNetwork net;
  auto coordinator = std::make_unique<StubCoordinator>(&net, Liveness());
  Agent agent(&net, "board-1");
  absl::Time now = absl::FromUnixSeconds(1000);
  RunFor(&now, absl::Seconds(10), agent, *coordinator);
  EXPECT_EQ(agent.session().state(), AgentSession::State::kReady);
  EXPECT_EQ(agent.session().registrations_sent(), 1);
  EXPECT_TRUE(coordinator->registry().Expire(now).empty());
  EXPECT_EQ(coordinator->registry().live(), 1u);
  EXPECT_EQ(coordinator->registry().Find("board-1")->registration.memory_budget_bytes,
            64u << 20);
}

TEST(SessionTest, ReregistersAfterCoordinatorRestart) {
  InMemoryNetwork net;
  auto coordinator = std::make_unique<StubCoordinator>(&net, Liveness());
  Agent agent(&net, "board-1");
  absl::Time now = absl::FromUnixSeconds(1000);
  RunFor(&now, absl::Seconds(3), agent, *coordinator);
  const uint64_t first_session = agent.session().session_id();
  // The restarted coordinator has lost its registry (and starts sessions
  // elsewhere): the next heartbeat is refused and the agent registers again.
  RegistryOptions fresh = Liveness();
  coordinator = std::make_unique<StubCoordinator>(&net, fresh);
  RunFor(&now, absl::Seconds(3), agent, *coordinator);
  EXPECT_EQ(agent.session().state(), AgentSession::State::kReady);
  EXPECT_EQ(agent.session().registrations_sent(), 2);
  EXPECT_NE(agent.session().session_id(), first_session);
  EXPECT_EQ(coordinator->registry().live(), 1u);
}

TEST(SessionTest, RegistersAgainWhenCoordinatorFallsSilent) {
  InMemoryNetwork net;
  auto coordinator = std::make_unique<StubCoordinator>(&net, Liveness());
  Agent agent(&net, "board-1");
  absl::Time now = absl::FromUnixSeconds(1000);
  RunFor(&now, absl::Seconds(2), agent, *coordinator);
  coordinator->set_silent(true);
  RunFor(&now, absl::Seconds(8), agent, *coordinator);
  EXPECT_EQ(agent.session().state(), AgentSession::State::kRegistering);
  const int tries = agent.session().registrations_sent();
  // Silent from 2 s, given up on at 7 s (5 s timeout), then Registers at a
  // doubling interval (7, 8, 10 s): a slow link is not drowned in them.
  EXPECT_GE(tries, 3);
  EXPECT_LE(tries, 4);
  coordinator->set_silent(false);
  RunFor(&now, absl::Seconds(5), agent, *coordinator);
  EXPECT_EQ(agent.session().state(), AgentSession::State::kReady);
}

TEST(SessionTest, CoordinatorNoticesSilentAgent) {
  InMemoryNetwork net;
  auto coordinator = std::make_unique<StubCoordinator>(&net, Liveness());
  Agent agent(&net, "board-1");
  absl::Time now = absl::FromUnixSeconds(1000);
  RunFor(&now, absl::Seconds(2), agent, *coordinator);
  RunFor(&now, absl::Seconds(3), agent, *coordinator, /*agent_alive=*/false);
  EXPECT_TRUE(coordinator->registry().Expire(now).empty());  // 3 s < 4 s
  RunFor(&now, absl::Seconds(2), agent, *coordinator, /*agent_alive=*/false);
  EXPECT_THAT(coordinator->registry().Expire(now), ::testing::ElementsAre("board-1"));
  EXPECT_TRUE(coordinator->registry().Expire(now).empty());  // reported once
  EXPECT_EQ(coordinator->registry().live(), 0u);
  // It comes back by itself.
  RunFor(&now, absl::Seconds(2), agent, *coordinator);
  EXPECT_EQ(coordinator->registry().live(), 1u);
}

TEST(RegistryTest, DeviceMayOnlyRegisterAsItself) {
  Registry registry(Liveness());
  const absl::Time now = absl::FromUnixSeconds(1);
  const absl::StatusOr<Welcome> spoof =
      registry.OnRegister("board-2", "board-1", Register{1, 1, 1, ""}, now);
  EXPECT_EQ(spoof.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(spoof.status().message()), HasSubstr("board-1"));
  EXPECT_TRUE(registry.OnRegister("board-1", "board-1", Register{1, 1, 1, ""}, now).ok());
  EXPECT_EQ(registry.OnHeard("board-1", 999, now).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.OnHeard("nobody", 1, now).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace fedge
