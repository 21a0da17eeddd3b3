// The agent loop over the in-memory transport against a scripted
// coordinator: it registers, runs the task it is sent through its executor,
// delivers the result and keeps it until acknowledged, reports a failed
// task, and stops a running task on request.

#include "device_agent/agent_loop.h"

#include <memory>
#include <string>
#include <vector>

#include "common/transport/testing/in_memory_transport.h"
#include "common/wire/wire_codec.h"
#include "device_agent/testing/synthetic_executor.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

class Coordinator {
 public:
  explicit Coordinator(InMemoryNetwork* net) : transport_(net->Bind()) {}

  std::vector<Message> Drain() {
    std::vector<Message> out;
    while (true) {
      auto p = transport_->Receive(absl::ZeroDuration());
      if (!p.ok() || !p->has_value()) return out;
      peer_ = (**p).peer;
      absl::StatusOr<Message> m = DecodeMessage((**p).frames);
      EXPECT_TRUE(m.ok());
      if (m.ok()) out.push_back(*m);
    }
  }
  void Send(Body body, uint64_t session = 7) {
    Message m;
    m.device_id = "board-1";
    m.session_id = session;
    m.body = std::move(body);
    Packet p;
    p.peer = peer_;
    p.frames = EncodeMessage(m).value();
    ASSERT_TRUE(transport_->Send(std::move(p)).ok());
  }

 private:
  std::unique_ptr<Transport> transport_;
  std::string peer_ = "board-1";
};

template <typename T>
int CountOf(const std::vector<Message>& messages) {
  int n = 0;
  for (const Message& m : messages) n += std::holds_alternative<T>(m.body) ? 1 : 0;
  return n;
}

Task OneShardTask(uint64_t id) {
  Task task;
  task.round_id = 1;
  task.task_id = id;
  WireTensor shard;
  shard.name = "w";
  shard.shape = {4};
  shard.payload.assign(16, '\0');
  task.shards.push_back(shard);
  return task;
}

AgentLoopOptions Options() {
  AgentLoopOptions o;
  o.session.device_id = "board-1";
  o.session.registration = Register{1 << 20, 1, 50, "test"};
  o.session.result_retry = absl::Seconds(5);
  return o;
}

TEST(AgentLoopTest, RunsATaskAndKeepsItsResultUntilAcknowledged) {
  InMemoryNetwork net;
  Coordinator coordinator(&net);
  std::unique_ptr<Transport> link = net.Connect("board-1");
  SyntheticExecutor executor({.value = 0.5f, .samples = 50, .train_time = absl::Seconds(2)});
  AgentLoop loop(link.get(), &executor, Options());
  absl::Time now = absl::FromUnixSeconds(100);
  loop.Step(now, absl::ZeroDuration());
  ASSERT_EQ(CountOf<Register>(coordinator.Drain()), 1);
  coordinator.Send(Welcome{7, 1000});
  coordinator.Send(OneShardTask(3));
  loop.Step(now, absl::ZeroDuration());
  EXPECT_TRUE(loop.busy());
  now += absl::Seconds(1);
  loop.Step(now, absl::ZeroDuration());
  EXPECT_EQ(CountOf<TaskResult>(coordinator.Drain()), 0);  // still training
  now += absl::Seconds(1);
  loop.Step(now, absl::ZeroDuration());
  std::vector<Message> sent = coordinator.Drain();
  ASSERT_EQ(CountOf<TaskResult>(sent), 1);
  EXPECT_FALSE(loop.busy());
  // No acknowledgement: sent again after result_retry; acknowledged: never.
  now += absl::Seconds(5);
  coordinator.Send(NoTask{1000});  // the coordinator is there, just slow to ack
  loop.Step(now, absl::ZeroDuration());
  EXPECT_EQ(CountOf<TaskResult>(coordinator.Drain()), 1);
  coordinator.Send(ResultAck{3, true, ""});
  loop.Step(now, absl::ZeroDuration());
  for (int i = 0; i < 10; ++i) {
    now += absl::Seconds(1);
    coordinator.Send(NoTask{1000});
    loop.Step(now, absl::ZeroDuration());
  }
  EXPECT_EQ(CountOf<TaskResult>(coordinator.Drain()), 0);
  EXPECT_EQ(loop.tasks_run(), 1);
}

TEST(AgentLoopTest, AFailedTaskIsReportedAndABadMessageCounted) {
  InMemoryNetwork net;
  Coordinator coordinator(&net);
  std::unique_ptr<Transport> link = net.Connect("board-1");
  InlineExecutor executor(
      [](const Task&) -> absl::StatusOr<TaskResult> { return absl::ResourceExhaustedError("oom"); });
  AgentLoop loop(link.get(), &executor, Options());
  absl::Time now = absl::FromUnixSeconds(100);
  loop.Step(now, absl::ZeroDuration());
  coordinator.Drain();
  coordinator.Send(Welcome{7, 1000});
  coordinator.Send(OneShardTask(4));
  loop.Step(now, absl::ZeroDuration());
  std::vector<Message> sent = coordinator.Drain();
  ASSERT_EQ(CountOf<TaskFailed>(sent), 1);
  for (const Message& m : sent) {
    if (const auto* f = std::get_if<TaskFailed>(&m.body)) EXPECT_EQ(f->reason, "oom");
  }
  Packet junk;
  junk.peer = "board-1";
  junk.frames = {"not a message"};
  std::unique_ptr<Transport> raw = net.Bind();
  ASSERT_TRUE(raw->Send(std::move(junk)).ok());
  loop.Step(now, absl::ZeroDuration());
  EXPECT_EQ(loop.bad_messages(), 1);
}

TEST(AgentLoopTest, StopReportsTheRunningTaskAsFailed) {
  InMemoryNetwork net;
  Coordinator coordinator(&net);
  std::unique_ptr<Transport> link = net.Connect("board-1");
  SyntheticExecutor executor({.train_time = absl::Hours(1)});
  AgentLoop loop(link.get(), &executor, Options());
  absl::Time now = absl::FromUnixSeconds(100);
  loop.Step(now, absl::ZeroDuration());
  coordinator.Drain();
  coordinator.Send(Welcome{7, 1000});
  coordinator.Send(OneShardTask(5));
  loop.Step(now, absl::ZeroDuration());
  ASSERT_TRUE(loop.busy());
  loop.Stop(now, "agent stopping (SIGTERM)");
  std::vector<Message> sent = coordinator.Drain();
  ASSERT_EQ(CountOf<TaskFailed>(sent), 1);
  EXPECT_FALSE(loop.busy());
}

}  // namespace
}  // namespace fedge
