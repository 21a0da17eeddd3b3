// Fleet simulation: many lightweight agents in one process over the
// in-memory transport, driving the real coordinator service and the real
// agent session through the real wire codec, on a fake clock. Agents skip
// training: each answers a task with a synthetic update of the model's
// shapes, so the aggregate a round must produce is known exactly.
//
// Faults: frames dropped, duplicated, reordered and corrupted on the agents'
// links, and agents that die mid-run. Each run must complete every round,
// lose no completed round, and end within a stated tolerance of the
// fault-free run.

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/faulty_transport.h"
#include "common/in_memory_transport.h"
#include "common/update_codec.h"
#include "common/wire_codec.h"
#include "coordinator/service.h"
#include "device_agent/session.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

ModelState InitialModel() {
  ModelState m;
  m.shards = {{"layer0.weight", 0, {10, 100}, std::vector<float>(1000, 0.0f)},
              {"layer1.weight", 1, {100}, std::vector<float>(100, 0.0f)}};
  return m;
}

// An agent that answers every task at once with update value `value` on
// every element of every shard.
class SyntheticAgent {
 public:
  SyntheticAgent(std::unique_ptr<Transport> transport, std::string id, float value,
                 uint64_t samples)
      : transport_(std::move(transport)), session_(Options(id, samples)), value_(value),
        samples_(samples) {}

  static SessionOptions Options(const std::string& id, uint64_t samples) {
    SessionOptions o;
    o.device_id = id;
    o.registration = Register{64 << 20, 1, samples, "sim"};
    o.register_retry = absl::Seconds(1);
    o.coordinator_timeout = absl::Seconds(20);
    return o;
  }

  void Step(absl::Time now) {
    if (dead_) return;
    for (const Message& m : session_.OnTick(now)) Send(m);
    while (true) {
      auto packet = transport_->Receive(absl::ZeroDuration());
      if (!packet.ok() || !packet->has_value()) break;
      absl::StatusOr<Message> m = DecodeMessage((**packet).frames);
      if (!m.ok()) continue;  // a corrupted downlink frame: dropped, as the agent does
      for (const Message& out : session_.OnMessage(*m, now)) Send(out);
    }
    while (std::optional<Task> task = session_.TakeTask()) {
      TaskResult r;
      r.round_id = task->round_id;
      r.task_id = task->task_id;
      r.model_version = task->model_version;
      r.samples = samples_;
      r.loss = 1.0f;
      r.accuracy = 0.5f;
      for (const WireTensor& shard : task->shards) {
        WireTensor u;
        u.layer = shard.layer;
        u.name = shard.name;
        u.shape = shard.shape;
        const std::vector<float> delta(shard.numel(), value_);
        EXPECT_TRUE(EncodeUpdate(delta, {Codec::kFp32, 0, 1}, 0, nullptr, &u).ok());
        r.updates.push_back(std::move(u));
      }
      Send(session_.Wrap(r));
    }
  }

  void Kill() { dead_ = true; }

 private:
  void Send(const Message& m) {
    absl::StatusOr<std::vector<std::string>> frames = EncodeMessage(m);
    ASSERT_TRUE(frames.ok()) << frames.status();
    Packet p;
    p.frames = std::move(*frames);
    (void)transport_->Send(std::move(p));
  }

  std::unique_ptr<Transport> transport_;
  AgentSession session_;
  float value_;
  uint64_t samples_;
  bool dead_ = false;
};

struct SimResult {
  bool completed = false;
  ModelState model;
  int rounds = 0;
  ServiceCounters counters;
  std::vector<RoundReport> reports;
};

SimResult Simulate(int agents, const FaultOptions& faults, int kill_at_round, int kill_count,
                   int min_agents) {
  InMemoryNetwork net;
  std::unique_ptr<Transport> server = net.Bind();
  ServiceOptions options;
  options.run.schedule = {{Phase::kPretrain, 2}, {Phase::kLearnPrecision, 2}, {Phase::kFinetune, 1}};
  options.run.min_agents = min_agents;
  options.run.quorum = 1.0;
  options.run.deadline = absl::Seconds(10);
  options.downlink = Codec::kFp32;
  options.liveness.heartbeat_interval = absl::Seconds(1);
  options.liveness.timeout = absl::Seconds(5);
  options.log = false;
  SimResult result;
  CoordinatorService service(options, InitialModel(), 0, server.get(),
                             [&](const RoundReport& r, const ModelState&) {
                               result.reports.push_back(r);
                             });
  std::vector<std::unique_ptr<SyntheticAgent>> fleet;
  for (int i = 0; i < agents; ++i) {
    const std::string id = "sim-" + std::to_string(i);
    FaultOptions f = faults;
    f.seed = faults.seed + i;
    auto link = std::make_unique<FaultyTransport>(net.Connect(id), f);
    // Values spread around 1.0; weights by sample count.
    fleet.push_back(std::make_unique<SyntheticAgent>(std::move(link), id,
                                                     1.0f + 0.01f * (i % 7 - 3), 100 + i % 5));
  }
  absl::Time now = absl::FromUnixSeconds(1000);
  for (int tick = 0; tick < 20000 && !service.done(); ++tick) {
    now += absl::Milliseconds(50);
    if (static_cast<int>(service.engine().completed_rounds()) == kill_at_round) {
      for (int k = 0; k < kill_count; ++k) fleet[k]->Kill();
    }
    for (auto& agent : fleet) agent->Step(now);
    for (int k = 0; k < 4 * agents; ++k) {
      if (!service.Step(now, absl::ZeroDuration()).ok()) return result;
    }
  }
  result.completed = service.done();
  result.model = service.model();
  result.rounds = static_cast<int>(service.engine().completed_rounds());
  result.counters = service.counters();
  return result;
}

double MeanValue(const ModelState& m) {
  double sum = 0;
  int64_t n = 0;
  for (const ModelShard& s : m.shards) {
    for (float v : s.values) sum += v;
    n += static_cast<int64_t>(s.values.size());
  }
  return sum / n;
}

TEST(FleetSimTest, FaultFreeRunAggregatesExactly) {
  const SimResult r = Simulate(100, FaultOptions(), -1, 0, /*min_agents=*/100);
  ASSERT_TRUE(r.completed);
  EXPECT_EQ(r.rounds, 5);
  // FedAvg of value_i weighted by samples_i, applied 5 times.
  double num = 0, den = 0;
  for (int i = 0; i < 100; ++i) {
    num += (1.0 + 0.01 * (i % 7 - 3)) * (100 + i % 5);
    den += 100 + i % 5;
  }
  for (const ModelShard& s : r.model.shards) {
    for (float v : s.values) ASSERT_NEAR(v, 5 * num / den, 1e-4);
  }
  EXPECT_EQ(r.model.version, 5u);
  for (const RoundReport& rep : r.reports) EXPECT_EQ(rep.summary.reported, 100);
}

TEST(FleetSimTest, DroppedDuplicatedReorderedAndCorruptedFrames) {
  FaultOptions faults;
  faults.drop = 0.03;
  faults.duplicate = 0.05;
  faults.reorder = 0.05;
  faults.corrupt = 0.02;
  faults.seed = 11;
  const SimResult clean = Simulate(50, FaultOptions(), -1, 0, 50);
  const SimResult faulty = Simulate(50, faults, -1, 0, 40);
  ASSERT_TRUE(faulty.completed) << "rounds done: " << faulty.rounds;
  EXPECT_EQ(faulty.rounds, 5);
  EXPECT_EQ(faulty.model.version, 5u);
  EXPECT_GT(faulty.counters.malformed, 0);  // corruption was seen and refused
  // Rounds lost some contributions, but each aggregate is a weighted mean of
  // values within 1 +- 0.03: the model stays within 1% of the clean run.
  EXPECT_NEAR(MeanValue(faulty.model), MeanValue(clean.model), 0.01 * MeanValue(clean.model));
}

TEST(FleetSimTest, AgentsKilledMidRun) {
  const SimResult clean = Simulate(60, FaultOptions(), -1, 0, 60);
  const SimResult r = Simulate(60, FaultOptions(), /*kill_at_round=*/2, /*kill_count=*/20, 30);
  ASSERT_TRUE(r.completed);
  EXPECT_EQ(r.rounds, 5);
  EXPECT_NEAR(MeanValue(r.model), MeanValue(clean.model), 0.01 * MeanValue(clean.model));
  // After the deaths, rounds ran with the 40 survivors.
  EXPECT_EQ(r.reports.back().summary.reported, 40);
}

}  // namespace
}  // namespace fedge
