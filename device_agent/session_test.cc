// The agent session, alone message by message, and through the real agent
// loop against the coordinator's registry over the in-memory transport and
// the real wire codec, with a fake clock: registration, heartbeats, a
// coordinator restart, a coordinator that goes silent, an agent that stops
// heartbeating, results kept until acknowledged, tasks across sessions.

#include "device_agent/session.h"

#include <memory>
#include <string>

#include "common/transport/testing/in_memory_transport.h"
#include "common/wire/wire_codec.h"
#include "coordinator/registry.h"
#include "device_agent/agent_loop.h"
#include "device_agent/testing/synthetic_executor.h"
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

SessionOptions TestSessionOptions(const std::string& id) {
  SessionOptions options;
  options.device_id = id;
  options.registration = Register{64 << 20, 2, 600, "test"};
  options.register_retry = absl::Seconds(1);
  options.coordinator_timeout = absl::Seconds(5);
  return options;
}

// The real agent loop, with an executor that is never given a task here.
class Agent {
 public:
  Agent(InMemoryNetwork* net, const std::string& id)
      : transport_(net->Connect(id)),
        executor_(SyntheticTaskOptions()),
        loop_(transport_.get(), &executor_, AgentLoopOptions{TestSessionOptions(id)}) {}

  void Step(absl::Time now) { loop_.Step(now, absl::ZeroDuration()); }
  const AgentSession& session() const { return loop_.session(); }

 private:
  std::unique_ptr<Transport> transport_;
  SyntheticExecutor executor_;
  AgentLoop loop_;
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

// The session alone, message by message.
Message Envelope(uint64_t session, Body body) {
  Message m;
  m.device_id = "board-1";
  m.session_id = session;
  m.body = std::move(body);
  return m;
}

template <typename T>
int CountOf(const std::vector<Message>& messages) {
  int n = 0;
  for (const Message& m : messages) n += std::holds_alternative<T>(m.body) ? 1 : 0;
  return n;
}

TEST(SessionTest, AResultIsKeptUntilAcknowledgedAndSentAgainAfterARestart) {
  SessionOptions options = TestSessionOptions("board-1");
  options.result_retry = absl::Seconds(10);
  options.coordinator_timeout = absl::Seconds(60);
  AgentSession session(options);
  absl::Time now = absl::FromUnixSeconds(1000);
  ASSERT_EQ(CountOf<Register>(session.OnTick(now)), 1);
  session.OnMessage(Envelope(11, Welcome{11, 1000}), now);
  TaskResult result;
  result.task_id = 5;
  EXPECT_EQ(CountOf<TaskResult>(session.Deliver(result, now)), 1);
  now += absl::Seconds(2);
  EXPECT_EQ(CountOf<TaskResult>(session.OnTick(now)), 0);  // not yet due again
  now += absl::Seconds(9);
  EXPECT_EQ(CountOf<TaskResult>(session.OnTick(now)), 1);  // no ack in 10 s: again
  // The coordinator restarted: the agent registers anew and, once
  // welcomed, sends the result again at once.
  const std::vector<Message> reg = session.OnMessage(Envelope(0, Reject{"session 11 is not current"}), now);
  ASSERT_EQ(CountOf<Register>(reg), 1);
  EXPECT_EQ(std::get<Register>(reg[0].body).has_task, 5u);
  session.OnMessage(Envelope(12, Welcome{12, 1000}), now);
  now += absl::Milliseconds(100);
  const std::vector<Message> out = session.OnTick(now);
  ASSERT_EQ(CountOf<TaskResult>(out), 1);
  EXPECT_EQ(session.results_sent(), 3);
  // Acknowledged (accepted or not): dropped.
  session.OnMessage(Envelope(12, ResultAck{5, false, "outside_round"}), now);
  EXPECT_FALSE(session.unacknowledged().has_value());
  now += absl::Seconds(60);
  EXPECT_EQ(CountOf<TaskResult>(session.OnTick(now)), 0);
}

TEST(SessionTest, ResultFinishedWhileRegisteringGoesOutOnceWelcomed) {
  AgentSession session(TestSessionOptions("board-1"));
  absl::Time now = absl::FromUnixSeconds(1000);
  session.OnTick(now);
  TaskResult result;
  result.task_id = 9;
  EXPECT_TRUE(session.Deliver(result, now).empty());  // no session to send it in
  session.OnMessage(Envelope(3, Welcome{3, 1000}), now);
  EXPECT_EQ(CountOf<TaskResult>(session.OnTick(now + absl::Milliseconds(10))), 1);
}

TEST(SessionTest, ATaskIsNeverLostToAReRegistrationNorRunTwice) {
  AgentSession session(TestSessionOptions("board-1"));
  absl::Time now = absl::FromUnixSeconds(1000);
  session.OnTick(now);
  session.OnMessage(Envelope(21, Welcome{21, 1000}), now);
  Task task;
  task.task_id = 44;
  // Sent under a session the agent has since replaced: still its task.
  session.OnMessage(Envelope(20, task), now);
  // The coordinator's copy after a re-registration: the same task, once.
  session.OnMessage(Envelope(21, task), now);
  ASSERT_TRUE(session.TakeTask().has_value());
  EXPECT_FALSE(session.TakeTask().has_value());
}

TEST(SessionTest, ASlowDownloadIsNotTakenForADeadCoordinator) {
  // 853 kB at 256 kbit/s holds every reply behind it for ~27 s (more with
  // loss): the default timeout outlasts it.
  SessionOptions defaults;
  defaults.device_id = "board-1";
  EXPECT_GE(defaults.coordinator_timeout, absl::Seconds(60));
  AgentSession session(defaults);
  absl::Time now = absl::FromUnixSeconds(1000);
  session.OnTick(now);
  session.OnMessage(Envelope(21, Welcome{21, 1000}), now);
  int registers = 0;
  for (int i = 0; i < 60; ++i) {
    now += absl::Seconds(1);
    registers += CountOf<Register>(session.OnTick(now));
  }
  EXPECT_EQ(registers, 0);
  EXPECT_EQ(session.state(), AgentSession::State::kReady);
}


}  // namespace
}  // namespace fedge
