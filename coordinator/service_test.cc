// The coordinator service against hostile and broken peers, over a scripted
// transport: the test hands it packets with any routing id and key
// identity, and reads back exactly what it sent. One test per promise:
// identity bound to every message, rejected results that neither close a
// round nor leave a trace in the model, no overflow from finite updates,
// logs that a peer cannot forge, replies that never block, and tasks and
// results that survive a re-registration.

#include "coordinator/service.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/env/faulty_env.h"
#include "common/codec/update_codec.h"
#include "common/wire/wire_codec.h"
#include "coordinator/checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A server transport the test scripts: Deliver() queues what Receive
// returns; Send records, or refuses (queue full) for peers marked so.
class ScriptedTransport : public Transport {
 public:
  absl::Status Send(Packet packet) override {
    FlattenSharedFrames(&packet);
    if (full_.count(packet.peer) != 0) {
      return absl::ResourceExhaustedError("the peer's queue is full");
    }
    sent_.push_back(std::move(packet));
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<Packet>> Receive(absl::Duration) override {
    if (inbox_.empty()) return std::optional<Packet>();
    Packet p = std::move(inbox_.front());
    inbox_.pop_front();
    return std::optional<Packet>(std::move(p));
  }

  void Deliver(const std::string& peer, const std::string& key_id, const Message& m) {
    absl::StatusOr<std::vector<std::string>> frames = EncodeMessage(m);
    ASSERT_TRUE(frames.ok()) << frames.status();
    DeliverFrames(peer, key_id, std::move(*frames));
  }
  void DeliverFrames(const std::string& peer, const std::string& key_id,
                     std::vector<std::string> frames) {
    inbox_.push_back(Packet{peer, key_id, std::move(frames)});
  }
  // Everything sent to `peer` since the last call, decoded.
  std::vector<Message> Take(const std::string& peer) {
    std::vector<Message> out;
    for (auto it = sent_.begin(); it != sent_.end();) {
      if (it->peer != peer) {
        ++it;
        continue;
      }
      absl::StatusOr<Message> m = DecodeMessage(it->frames);
      EXPECT_TRUE(m.ok()) << m.status();
      if (m.ok()) out.push_back(std::move(*m));
      it = sent_.erase(it);
    }
    return out;
  }
  void SetFull(const std::string& peer) { full_.insert(peer); }
  size_t pending() const { return inbox_.size(); }

 private:
  std::deque<Packet> inbox_;
  std::vector<Packet> sent_;
  std::set<std::string> full_;
};

ModelState Model() {
  ModelState m;
  m.shards = {{"a.weight", 0, {4}, {0.5f, -0.25f, 1.0f, 0.0f}}, {"b.weight", 1, {2}, {1, 2}}};
  return m;
}

template <typename T>
const T* Find(const std::vector<Message>& messages) {
  for (const Message& m : messages) {
    if (const auto* body = std::get_if<T>(&m.body)) return body;
  }
  return nullptr;
}

Message From(const std::string& device, uint64_t session, Body body) {
  Message m;
  m.device_id = device;
  m.session_id = session;
  m.body = std::move(body);
  return m;
}

WireTensor Update(const std::string& name, std::vector<float> values) {
  WireTensor t;
  t.name = name;
  t.shape = {static_cast<uint32_t>(values.size())};
  EXPECT_TRUE(EncodeUpdate(values, {Codec::kFp32, 0, 1}, 0, nullptr, &t).ok());
  return t;
}

// An fp32 update with a NaN at `at` (encoders refuse to make one).
WireTensor WithNaN(const std::string& name, std::vector<float> values, size_t at) {
  WireTensor t = Update(name, values);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(&t.payload[4 * at], &nan, 4);
  return t;
}

TaskResult Answer(const Task& task, std::vector<WireTensor> updates, uint64_t samples = 10) {
  TaskResult r;
  r.round_id = task.round_id;
  r.task_id = task.task_id;
  r.samples = samples;
  r.updates = std::move(updates);
  return r;
}

// A service and a few enrolled agents; each agent's connection has routing
// id "<id>/n" and speaks with its key's identity.
class ServiceTest : public ::testing::Test {
 protected:
  void Start(int agents, double quorum = 1.0, ModelState model = Model()) {
    ServiceOptions options;
    options.run.schedule = {{Phase::kPretrain, 3}};
    options.run.min_agents = agents;
    options.run.quorum = quorum;
    options.run.deadline = absl::Seconds(30);
    options.downlink = Codec::kFp32;
    options.liveness.timeout = absl::Seconds(600);
    options.refusals = {/*per_second=*/1, /*burst=*/20, /*max_peers=*/1000};
    service_ = std::make_unique<CoordinatorService>(
        options, std::move(model), 0, &transport_,
        [this](const RoundReport& r, const ModelState&) { reports_.push_back(r); });
    for (int i = 0; i < agents; ++i) Enroll("board-" + std::to_string(i));
    Run();
  }

  static std::string Route(const std::string& id) { return id + "/n"; }

  void Enroll(const std::string& id, uint64_t has_task = 0, bool new_connection = true) {
    transport_.Deliver(Route(id), id,
                       From(id, 0, fedge::Register{64 << 20, 1, 100, "t", has_task, new_connection}));
    Run();
    for (const Message& m : transport_.Take(Route(id))) {
      if (const auto* w = std::get_if<Welcome>(&m.body)) session_[id] = w->session_id;
      if (const auto* t = std::get_if<Task>(&m.body)) task_[id] = *t;
    }
  }

  void Run(absl::Duration advance = absl::Milliseconds(10)) {
    do {
      now_ += advance;
      ASSERT_TRUE(service_->Step(now_, absl::ZeroDuration()).ok());
    } while (transport_.pending() > 0);
    for (auto& [id, session] : session_) {
      for (const Message& m : transport_.Take(Route(id))) {
        if (const auto* t = std::get_if<Task>(&m.body)) task_[id] = *t;
        if (const auto* w = std::get_if<Welcome>(&m.body)) session = w->session_id;
        replies_[id].push_back(m);
      }
    }
  }

  void Send(const std::string& id, Body body) {
    transport_.Deliver(Route(id), id, From(id, session_[id], std::move(body)));
  }

  int Count(const std::string& reason) const {
    auto it = service_->counters().rejections.find(reason);
    return it == service_->counters().rejections.end() ? 0 : static_cast<int>(it->second);
  }

  ScriptedTransport transport_;
  std::unique_ptr<CoordinatorService> service_;
  std::vector<RoundReport> reports_;
  std::map<std::string, uint64_t> session_;
  std::map<std::string, Task> task_;
  std::map<std::string, std::vector<Message>> replies_;
  absl::Time now_ = absl::FromUnixSeconds(1000);
};

TEST_F(ServiceTest, OneEnrolledDeviceCannotActAsAnother) {
  Start(2);
  ASSERT_EQ(task_.size(), 2u);
  // board-1's key, on a connection that claims board-0's routing id and
  // envelope: heartbeat, result and failure are all refused.
  const uint64_t s0 = session_["board-0"];
  transport_.Deliver("board-0", "board-1", From("board-0", s0, Heartbeat{0}));
  transport_.Deliver("board-0/x", "board-1",
                     From("board-0", s0, Answer(task_["board-0"], {Update("b.weight", {1, 1})})));
  transport_.Deliver("board-0/x", "board-1",
                     From("board-0", s0, TaskFailed{1, task_["board-0"].task_id, "x"}));
  // Its own envelope on a route that names board-0: refused too.
  transport_.Deliver("board-0/y", "board-1",
                     From("board-1", session_["board-1"], Heartbeat{0}));
  Run();
  EXPECT_EQ(Count("identity_mismatch"), 4);
  EXPECT_EQ(Find<NoTask>(transport_.Take("board-0")), nullptr);
  EXPECT_EQ(Find<ResultAck>(transport_.Take("board-0/x")), nullptr);
  EXPECT_THAT(Find<Reject>(transport_.Take("board-0/y"))->reason, HasSubstr("enrolled as 'board-1'"));
  EXPECT_TRUE(service_->engine().in_round());  // board-0's task is still open
  EXPECT_EQ(service_->counters().accepted_results, 0);
  // The real board-0 still answers for itself, on its own route.
  Send("board-0", Answer(task_["board-0"], {Update("b.weight", {1, 1})}));
  Run();
  const ResultAck* ack = Find<ResultAck>(replies_["board-0"]);
  ASSERT_NE(ack, nullptr);
  EXPECT_TRUE(ack->accepted);
}

TEST_F(ServiceTest, ARejectedResultDoesNotCloseTheRound) {
  Start(1);
  Send("board-0", Answer(task_["board-0"], {WithNaN("b.weight", {0, 0}, 0)}));
  Run();
  EXPECT_EQ(Count("non_finite"), 1);
  const ResultAck* ack = Find<ResultAck>(replies_["board-0"]);
  ASSERT_NE(ack, nullptr);
  EXPECT_FALSE(ack->accepted);
  EXPECT_EQ(ack->reason, "non_finite");
  // Not done, not checkpointed, not evaluated: the round runs again after
  // its back-off.
  EXPECT_TRUE(reports_.empty());
  EXPECT_EQ(service_->engine().completed_rounds(), 0u);
  EXPECT_EQ(service_->model().version, 0u);
  EXPECT_EQ(service_->counters().round_retries, 1);
  const uint64_t first_task = task_["board-0"].task_id;
  Run(absl::Seconds(2));
  EXPECT_NE(task_["board-0"].task_id, first_task);
  Send("board-0", Answer(task_["board-0"], {Update("b.weight", {1, 1})}));
  Run();
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].summary.reported, 1);
}

TEST_F(ServiceTest, AHostileFirstAnswerCannotMakeTheQuorum) {
  Start(2, /*quorum=*/0.5);
  Send("board-0", Answer(task_["board-0"], {Update("b.weight", {1e30f, 0})}));
  Run();
  EXPECT_EQ(Count("too_large"), 1);
  EXPECT_TRUE(reports_.empty());  // one answer, but not an accepted one
  Send("board-1", Answer(task_["board-1"], {Update("b.weight", {0.5f, 0.5f})}));
  Run();
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].summary.reported, 1);
  EXPECT_EQ(reports_[0].summary.rejected, 1);
}

TEST_F(ServiceTest, ARejectedResultLeavesTheModelBitIdentical) {
  Start(2);
  // board-0: +100 on one shard and a NaN on the other. board-1: honest.
  Send("board-0", Answer(task_["board-0"], {Update("a.weight", {100, 100, 100, 100}),
                                            WithNaN("b.weight", {0, 0}, 0)}));
  Send("board-1", Answer(task_["board-1"], {Update("a.weight", {0.125f, 0.25f, -0.5f, 1}),
                                            Update("b.weight", {0.5f, -1})}));
  Run();
  ASSERT_EQ(reports_.size(), 1u);
  ModelState expected = Model();
  const float a[] = {0.5f + 0.125f, -0.25f + 0.25f, 1.0f - 0.5f, 0.0f + 1};
  const float b[] = {1.5f, 1.0f};
  const ModelState& model = service_->model();
  ASSERT_EQ(model.shards[0].values.size(), 4u);
  EXPECT_EQ(std::memcmp(model.shards[0].values.data(), a, sizeof(a)), 0);
  EXPECT_EQ(std::memcmp(model.shards[1].values.data(), b, sizeof(b)), 0);
  EXPECT_EQ(Count("non_finite"), 1);
}

TEST_F(ServiceTest, ARoundPoolsTheAgentsNormStatistics) {
  ModelState model;
  model.shards = {{"bn.running_mean", 0, {2}, {0, 0}}, {"bn.running_var", 0, {2}, {1, 1}}};
  Start(2, 1.0, model);
  // Means 1 +- 2 and 0, variances 1: together their data have variance 1 + 4 in the first
  // channel.
  Send("board-0", Answer(task_["board-0"], {Update("bn.running_mean", {3, 0}),
                                            Update("bn.running_var", {0, 0})}));
  Send("board-1", Answer(task_["board-1"], {Update("bn.running_mean", {-1, 0}),
                                            Update("bn.running_var", {0, 0})}));
  Run();
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(service_->model().shards[0].values, (std::vector<float>{1, 0}));
  EXPECT_EQ(service_->model().shards[1].values, (std::vector<float>{5, 1}));
}

TEST_F(ServiceTest, OneHugeFiniteUpdateCannotDestroyTheRound) {
  Start(2);
  Send("board-0", Answer(task_["board-0"], {Update("b.weight", {3e38f, 3e38f})}));
  Send("board-1", Answer(task_["board-1"], {Update("b.weight", {1, 1})}));
  Run();
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(service_->model().shards[1].values, (std::vector<float>{2, 3}));
  EXPECT_EQ(Count("too_large"), 1);
}

TEST_F(ServiceTest, ClaimedSamplesAreCappedAtTheRegisteredCount) {
  Start(2);
  // Registered with 100 samples; a claim of 10^9 weighs as 100.
  Send("board-0", Answer(task_["board-0"], {Update("b.weight", {4, 4})}, 1000000000ull));
  Send("board-1", Answer(task_["board-1"], {Update("b.weight", {2, 2})}, 100));
  Run();
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(service_->model().shards[1].values, (std::vector<float>{4, 5}));  // + (4+2)/2
}

TEST_F(ServiceTest, PeerTextCannotForgeALogLine) {
  Start(1);
  ::testing::internal::CaptureStderr();
  // A routing id with a newline (the frames do not decode as anything) and
  // a failure reason with one.
  transport_.DeliverFrames("board-9\n[coordinator] round 9/9 done", "", {"garbage"});
  Send("board-0", TaskFailed{1, task_["board-0"].task_id, "oom\n[coordinator] round 9/9 done"});
  Run();
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("round 9/9 done"));  // it is there, escaped...
  EXPECT_THAT(log, Not(HasSubstr("\n[coordinator] round 9/9 done")));  // ...never a line of its own
}

TEST_F(ServiceTest, APeerThatDoesNotReadCostsRepliesNotTheLoop) {
  Start(1);
  transport_.SetFull("flood/1");
  for (int i = 0; i < 500; ++i) transport_.DeliverFrames("flood/1", "", {"junk"});
  // And one that reads, but floods: answered up to its allowance.
  for (int i = 0; i < 500; ++i) transport_.DeliverFrames("flood/2", "", {"junk"});
  Run();
  const ServiceCounters& c = service_->counters();
  EXPECT_EQ(c.malformed, 1000);
  // Each peer gets its allowance (a burst of 20, and 1/s as the clock
  // moves): the rest is counted and dropped, and nothing ever waits.
  const int64_t full = c.dropped_replies.at("peer_queue_full");
  const int64_t limited = c.dropped_replies.at("rate_limited");
  const int64_t answered = static_cast<int64_t>(transport_.Take("flood/2").size());
  EXPECT_GE(full, 20);
  EXPECT_LE(full, 40);
  EXPECT_GE(answered, 20);
  EXPECT_LE(answered, 40);
  EXPECT_EQ(full + limited + answered, 1000);
  // Everyone else is served as before.
  Enroll("board-5");
  EXPECT_NE(session_["board-5"], 0u);
  Send("board-0", Heartbeat{0});
  Run();
  EXPECT_NE(Find<NoTask>(replies_["board-0"]), nullptr);
}

TEST_F(ServiceTest, ATaskSurvivesAReRegistration) {
  Start(1);
  const Task task = task_["board-0"];
  const uint64_t old_session = session_["board-0"];
  task_.clear();
  // The agent registered again on the same connection (its Welcome was
  // slow): the task is still on its way, not sent twice.
  Enroll("board-0", 0, /*new_connection=*/false);
  EXPECT_EQ(task_.count("board-0"), 0u);
  // On a new connection (restarted, or the link re-established): sent
  // again, unless the agent says it holds it.
  Enroll("board-0");
  ASSERT_EQ(task_.count("board-0"), 1u);
  EXPECT_EQ(task_["board-0"].task_id, task.task_id);
  EXPECT_EQ(task_["board-0"].shards.size(), 2u);
  task_.clear();
  Enroll("board-0", /*has_task=*/task.task_id);
  EXPECT_EQ(task_.count("board-0"), 0u);
  EXPECT_EQ(service_->counters().tasks_resent, 1);
  // A result computed under the first session still counts.
  EXPECT_NE(session_["board-0"], old_session);
  transport_.Deliver(Route("board-0"), "board-0",
                     From("board-0", old_session, Answer(task, {Update("b.weight", {1, 1})})));
  Run();
  ASSERT_EQ(reports_.size(), 1u);
  // Sent twice (no ack reached the agent): acknowledged again, counted once.
  transport_.Deliver(Route("board-0"), "board-0",
                     From("board-0", old_session, Answer(task, {Update("b.weight", {1, 1})})));
  Run();
  const ResultAck* again = nullptr;
  for (const Message& m : replies_["board-0"]) {
    if (const auto* a = std::get_if<ResultAck>(&m.body)) again = a;
  }
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->task_id, task.task_id);
  EXPECT_EQ(service_->counters().accepted_results, 1);
}

TEST_F(ServiceTest, RoundsWithNoResultBackOff) {
  Start(1);
  std::vector<absl::Time> starts;
  uint64_t last_task = task_["board-0"].task_id;
  starts.push_back(now_);
  for (int i = 0; i < 80 && starts.size() < 5; ++i) {
    Send("board-0", TaskFailed{task_["board-0"].round_id, task_["board-0"].task_id, "disk full"});
    for (int j = 0; j < 100 && task_["board-0"].task_id == last_task; ++j) Run(absl::Milliseconds(250));
    last_task = task_["board-0"].task_id;
    starts.push_back(now_);
  }
  ASSERT_GE(starts.size(), 5u);
  // 1 s, 2 s, 4 s, 8 s apart (to the step): not 122 attempts a minute.
  for (size_t i = 1; i + 1 < starts.size(); ++i) {
    EXPECT_GT(starts[i + 1] - starts[i], 1.5 * (starts[i] - starts[i - 1]) - absl::Milliseconds(600))
        << i;
  }
  EXPECT_EQ(service_->counters().round_retries, static_cast<int64_t>(starts.size() - 1));
}

// Steps `service` 10 ms at a time until `transport` holds nothing more for it.
void StepUntilQuiet(CoordinatorService& service, ScriptedTransport& transport, absl::Time* now) {
  do {
    *now += absl::Milliseconds(10);
    ASSERT_TRUE(service.Step(*now, absl::ZeroDuration()).ok());
  } while (transport.pending() > 0);
}

TEST(ServiceDownlinkTest, FrozenLayersGoAsTheirCodingAndTheRoundCountsItsBytes) {
  ScriptedTransport transport;
  ServiceOptions options;
  options.run.schedule = {{Phase::kPretrain, 1}};
  options.run.min_agents = 2;
  options.run.deadline = absl::Seconds(30);
  options.downlink = Codec::kFp32;
  options.liveness.timeout = absl::Seconds(600);
  options.log = false;
  // board-1 trains only layer 1; board-0 everything.
  options.planner = [](const AgentRecord& a) -> std::optional<ShardPlan> {
    return ShardPlan{a.device_id == "board-1" ? 1u : 0u, 0};
  };
  int coded = 0;
  options.frozen_codings = [&coded](const ModelState& model) {
    ++coded;
    EXPECT_EQ(model.shards.size(), 2u);
    FrozenCoding signs;
    signs.codec = Codec::kSignEf;
    return std::map<std::string, FrozenCoding>{{"a.weight", signs}};
  };
  std::vector<RoundReport> reports;
  CoordinatorService service(options, Model(), 0, &transport,
                             [&](const RoundReport& r, const ModelState&) { reports.push_back(r); });
  absl::Time now = absl::FromUnixSeconds(1000);
  auto run = [&] { StepUntilQuiet(service, transport, &now); };
  std::map<std::string, uint64_t> session;
  std::map<std::string, Task> task;
  for (const std::string id : {"board-0", "board-1"}) {
    transport.Deliver(id + "/n", id, From(id, 0, fedge::Register{64 << 20, 1, 100, "t", 0, true}));
    run();
    for (const Message& m : transport.Take(id + "/n")) {
      if (const auto* w = std::get_if<Welcome>(&m.body)) session[id] = w->session_id;
      if (const auto* t = std::get_if<Task>(&m.body)) task[id] = *t;
    }
  }
  run();
  for (const std::string id : {"board-0", "board-1"}) {
    for (const Message& m : transport.Take(id + "/n")) {
      if (const auto* t = std::get_if<Task>(&m.body)) task[id] = *t;
    }
  }

  ASSERT_EQ(task.size(), 2u);
  EXPECT_EQ(coded, 1);  // once per round, not per task
  // Trained: the downlink codec. Frozen: signs, one byte for four weights.
  EXPECT_EQ(task["board-0"].shards[0].codec, Codec::kFp32);
  EXPECT_EQ(task["board-1"].shards[0].codec, Codec::kSignEf);
  EXPECT_EQ(task["board-1"].shards[0].payload.size(), 1u);
  std::vector<float> decoded(4);
  ASSERT_TRUE(DecodeTensor(task["board-1"].shards[0], absl::MakeSpan(decoded)).ok());
  EXPECT_GT(decoded[0], 0);
  EXPECT_LT(decoded[1], 0);
  EXPECT_EQ(task["board-1"].shards[1].codec, Codec::kFp32);  // layer 1 trains
  for (const std::string id : {"board-0", "board-1"}) {
    transport.Deliver(id + "/n", id,
                      From(id, session[id], Answer(task[id], {Update("b.weight", {0.1f, 0.1f})})));
  }
  run();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].downlink_bytes, (16 + 8) + (1 + 8));
  EXPECT_EQ(reports[0].fp32_downlink_bytes, 2 * (16 + 8));
}

TEST(ServiceProjectionTest, AFinetuneRoundSendsTheModelProjectedOntoItsBudget) {
  ScriptedTransport transport;
  ServiceOptions options;
  options.run.schedule = {{Phase::kPretrain, 1}, {Phase::kFinetune, 2}};
  options.run.min_agents = 1;
  options.run.deadline = absl::Seconds(30);
  options.downlink = Codec::kFp32;
  options.liveness.timeout = absl::Seconds(600);
  options.log = false;
  // Stands in for the evaluator: the first finetune round's model is moved
  // (a.weight to 0.25 each), the second is already within budget.
  int calls = 0;
  options.project_to_budget = [&calls](const Hyper&, ModelState* m) -> absl::StatusOr<bool> {
    if (++calls > 1) return false;
    for (float& v : m->shards[0].values) v = 0.25f;
    return true;
  };
  CoordinatorService service(options, Model(), 0, &transport, nullptr);
  absl::Time now = absl::FromUnixSeconds(1000);
  auto run = [&] { StepUntilQuiet(service, transport, &now); };
  uint64_t session = 0;
  std::vector<Task> tasks;
  auto take = [&] {
    for (const Message& m : transport.Take("board-0/n")) {
      if (const auto* w = std::get_if<Welcome>(&m.body)) session = w->session_id;
      if (const auto* t = std::get_if<Task>(&m.body)) tasks.push_back(*t);
    }
  };
  transport.Deliver("board-0/n", "board-0",
                    From("board-0", 0, fedge::Register{64 << 20, 1, 100, "t", 0, true}));
  run();
  take();
  // Answer rounds 1 (pretrain) and 2 (finetune); round 3 (finetune) starts.
  for (int round = 0; round < 2; ++round) {
    ASSERT_EQ(tasks.size(), static_cast<size_t>(round + 1)) << round;
    transport.Deliver("board-0/n", "board-0",
                      From("board-0", session, Answer(tasks.back(), {Update("b.weight", {0.1f, 0.1f})})));
    // The next round starts on a later step.
    for (int step = 0; step < 100 && tasks.size() == static_cast<size_t>(round + 1); ++step) {
      run();
      take();
    }
  }
  ASSERT_EQ(tasks.size(), 3u);
  // Pretrain: not asked; each finetune round: asked once, whatever the
  // number of tasks.
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(service.counters().projections, 1);
  std::vector<float> first(4), second(4);
  ASSERT_TRUE(DecodeTensor(tasks[0].shards[0], absl::MakeSpan(first)).ok());
  ASSERT_TRUE(DecodeTensor(tasks[1].shards[0], absl::MakeSpan(second)).ok());
  EXPECT_EQ(first, (std::vector<float>{0.5f, -0.25f, 1.0f, 0.0f}));
  EXPECT_EQ(second, (std::vector<float>{0.25f, 0.25f, 0.25f, 0.25f}));
  EXPECT_EQ(tasks[1].phase, Phase::kFinetune);
}

TEST(ServiceCheckpointTest, AFailedCheckpointLeavesTheLastGoodOneAndTheRunGoesOn) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  for (FaultyEnv::Fault fault : {FaultyEnv::Fault::kWrite, FaultyEnv::Fault::kSync,
                                 FaultyEnv::Fault::kRename, FaultyEnv::Fault::kDiskFull,
                                 FaultyEnv::Fault::kTornWrite}) {
    SCOPED_TRACE(static_cast<int>(fault));
    const std::string path = std::string(tmp != nullptr ? tmp : "/tmp") + "/checkpoint-" +
                             std::to_string(static_cast<int>(fault)) + ".bin";
    std::remove(path.c_str());
    FaultyEnv env(Env::Default());
    ScriptedTransport transport;
    ServiceOptions options;
    options.run.schedule = {{Phase::kPretrain, 3}};
    options.run.min_agents = 1;
    options.downlink = Codec::kFp32;
    options.liveness.timeout = absl::Seconds(600);
    options.checkpoint_path = path;
    options.env = &env;
    CoordinatorService service(options, Model(), 0, &transport, nullptr);
    absl::Time now = absl::FromUnixSeconds(1000);
    auto step = [&] {
      for (int i = 0; i < 5; ++i) {
        now += absl::Milliseconds(10);
        ASSERT_TRUE(service.Step(now, absl::ZeroDuration()).ok());
      }
    };
    transport.Deliver("b/1", "b", From("b", 0, fedge::Register{1 << 20, 1, 10, "t", 0, true}));
    step();
    uint64_t session = 0;
    // Answers the round's task with +1 on shard b.
    auto answer = [&] {
      std::optional<Task> task;
      for (const Message& m : transport.Take("b/1")) {
        if (const auto* w = std::get_if<Welcome>(&m.body)) session = w->session_id;
        if (const auto* t = std::get_if<Task>(&m.body)) task = *t;
      }
      ASSERT_TRUE(task.has_value());
      transport.Deliver("b/1", "b", From("b", session, Answer(*task, {Update("b.weight", {1, 1})})));
      step();
    };
    answer();
    ASSERT_EQ(ReadCheckpoint(path)->completed_rounds, 1u);
    env.Inject(fault);
    ::testing::internal::CaptureStderr();
    answer();  // round 2: its checkpoint fails
    const std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_THAT(log, HasSubstr("checkpoint after round 2 not written"));
    EXPECT_THAT(log, HasSubstr("the last good checkpoint (after round 1) stays in place"));
    EXPECT_EQ(ReadCheckpoint(path)->completed_rounds, 1u);  // intact, readable
    EXPECT_EQ(service.counters().checkpoint_failures, 1);
    EXPECT_EQ(service.engine().completed_rounds(), 2u);  // the run went on
    env.Clear();
    answer();  // round 3: written again
    absl::StatusOr<Checkpoint> last = ReadCheckpoint(path);
    ASSERT_TRUE(last.ok());
    EXPECT_EQ(last->completed_rounds, 3u);
    EXPECT_EQ(last->model.shards[1].values, (std::vector<float>{4, 5}));
  }
}

}  // namespace
}  // namespace fedge
