// Fleet simulation: many agents in one process over the in-memory
// transport, driving the real coordinator service and the real agent loop
// through the real wire codec, on a fake clock. Agents skip training: a
// synthetic executor answers each task with an update of the model's
// shapes, so the aggregate a round must produce is known exactly.
//
// Faults: frames dropped, duplicated, reordered and corrupted on the agents'
// links, and agents that die mid-run. Each run must complete every round,
// lose no completed round, and end within a stated tolerance of the
// fault-free run.
//
// Slow links: each agent behind its own link of limited bandwidth, latency,
// jitter and segment loss (common/rate_limited_transport.h), with a model
// the size of fmnist-cnn (853 kB per task in fp16): every round must
// complete without waiting out its deadline.

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <cstdio>
#include <deque>
#include <utility>

#include "common/transport/testing/faulty_transport.h"
#include "common/transport/testing/in_memory_transport.h"
#include "common/transport/testing/rate_limited_transport.h"
#include "coordinator/service.h"
#include "device_agent/agent_loop.h"
#include "device_agent/testing/synthetic_executor.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

ModelState InitialModel() {
  ModelState m;
  m.shards = {{"layer0.weight", 0, {10, 100}, std::vector<float>(1000, 0.0f)},
              {"layer1.weight", 1, {100}, std::vector<float>(100, 0.0f)}};
  return m;
}

// fmnist-cnn's size: 426,570 parameters, 853 kB per task in fp16.
ModelState FmnistSizedModel() {
  ModelState m;
  m.shards = {{"conv1.weight", 0, {32, 1, 3, 3}, std::vector<float>(288, 0.0f)},
              {"conv2.weight", 1, {64, 32, 3, 3}, std::vector<float>(18432, 0.0f)},
              {"fc1.weight", 2, {128, 3136}, std::vector<float>(401408, 0.0f)},
              {"fc2.weight", 3, {10, 128}, std::vector<float>(1280, 0.0f)},
              {"act_step", 4, {5162}, std::vector<float>(5162, 0.0f)}};
  return m;
}

// An agent of the fleet: the real agent loop with a synthetic executor.
struct SimAgent {
  SimAgent(std::unique_ptr<Transport> transport, const std::string& id, uint64_t samples,
           float value, absl::Duration train_time, absl::Duration coordinator_timeout)
      : link(std::move(transport)),
        executor({value, samples, train_time}),
        loop(link.get(), &executor, Options(id, samples, coordinator_timeout)) {}

  static AgentLoopOptions Options(const std::string& id, uint64_t samples,
                                  absl::Duration coordinator_timeout) {
    AgentLoopOptions o;
    o.session.device_id = id;
    o.session.registration = Register{64 << 20, 1, samples, "sim"};
    o.session.register_retry = absl::Seconds(1);
    o.session.coordinator_timeout = coordinator_timeout;
    return o;
  }

  void Step(absl::Time now) {
    if (!dead) loop.Step(now, absl::ZeroDuration());
  }

  std::unique_ptr<Transport> link;
  SyntheticExecutor executor;
  AgentLoop loop;
  bool dead = false;
};

struct SimResult {
  bool completed = false;
  ModelState model;
  int rounds = 0;
  ServiceCounters counters;
  std::vector<RoundReport> reports;
  absl::Duration elapsed;     // simulated time to the end of the schedule
  int registrations = 0;      // Registers the agents sent, first ones included
};

struct SimOptions {
  int agents = 10;
  int min_agents = 10;
  FaultOptions faults;
  std::optional<LinkOptions> link;  // each agent behind its own slow link
  int kill_at_round = -1;
  int kill_count = 0;
  bool fmnist_sized = false;
  absl::Duration deadline = absl::Seconds(10);
  absl::Duration coordinator_timeout = absl::Seconds(20);
  absl::Duration train_time = absl::ZeroDuration();
  int rounds = 5;
};

SimResult Simulate(const SimOptions& sim) {
  InMemoryNetwork net;
  std::unique_ptr<Transport> server = net.Bind();
  ServiceOptions options;
  options.run.schedule = {{Phase::kPretrain, 2}, {Phase::kLearnPrecision, 2},
                          {Phase::kFinetune, sim.rounds - 4}};
  options.run.min_agents = sim.min_agents;
  options.run.quorum = 1.0;
  options.run.deadline = sim.deadline;
  options.downlink = sim.fmnist_sized ? Codec::kFp16 : Codec::kFp32;
  options.liveness.heartbeat_interval = absl::Seconds(1);
  options.liveness.timeout = sim.link ? absl::Seconds(30) : absl::Seconds(5);
  options.log = false;
  SimResult result;
  absl::Time now = absl::FromUnixSeconds(1000);
  const absl::Time start = now;
  CoordinatorService service(options, sim.fmnist_sized ? FmnistSizedModel() : InitialModel(), 0,
                             server.get(), [&](const RoundReport& r, const ModelState&) {
                               result.reports.push_back(r);
                             });
  std::vector<std::unique_ptr<SimAgent>> fleet;
  for (int i = 0; i < sim.agents; ++i) {
    const std::string id = "sim-" + std::to_string(i);
    std::unique_ptr<Transport> link = net.Connect(id);
    if (sim.link) {
      LinkOptions l = *sim.link;
      l.seed = sim.link->seed + i;
      link = std::make_unique<RateLimitedTransport>(std::move(link), l, [&now] { return now; });
    }
    FaultOptions f = sim.faults;
    f.seed = sim.faults.seed + i;
    f.clock = [&now] { return now; };
    link = std::make_unique<FaultyTransport>(std::move(link), f);
    // Values spread around 1.0; weights by sample count.
    fleet.push_back(std::make_unique<SimAgent>(std::move(link), id, 100 + i % 5,
                                               1.0f + 0.01f * (i % 7 - 3), sim.train_time,
                                               sim.coordinator_timeout));
  }
  for (int tick = 0; tick < 40000 && !service.done(); ++tick) {
    now += absl::Milliseconds(50);
    if (static_cast<int>(service.engine().completed_rounds()) == sim.kill_at_round) {
      for (int k = 0; k < sim.kill_count; ++k) fleet[k]->dead = true;
    }
    for (auto& agent : fleet) agent->Step(now);
    for (int k = 0; k < 4 * sim.agents; ++k) {
      if (!service.Step(now, absl::ZeroDuration()).ok()) return result;
    }
  }
  result.completed = service.done();
  result.model = service.model();
  result.rounds = static_cast<int>(service.engine().completed_rounds());
  result.counters = service.counters();
  result.elapsed = now - start;
  for (const auto& agent : fleet) result.registrations += agent->loop.session().registrations_sent();
  return result;
}

SimResult Simulate(int agents, const FaultOptions& faults, int kill_at_round, int kill_count,
                   int min_agents) {
  SimOptions sim;
  sim.agents = agents;
  sim.faults = faults;
  sim.kill_at_round = kill_at_round;
  sim.kill_count = kill_count;
  sim.min_agents = min_agents;
  return Simulate(sim);
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

// Five agents, fmnist-cnn-sized tasks that take 5 s to train (about what a
// 60-step task takes on a board), six rounds, a 60 s deadline, the agents'
// default liveness settings.
SimOptions SlowLinkFleet(std::optional<LinkOptions> link) {
  SimOptions sim;
  sim.agents = 5;
  sim.min_agents = 5;
  sim.fmnist_sized = true;
  sim.rounds = 6;
  sim.deadline = absl::Seconds(60);
  sim.train_time = absl::Seconds(5);
  sim.coordinator_timeout = SessionOptions().coordinator_timeout;
  sim.link = std::move(link);
  return sim;
}

void Report(const char* name, const SimResult& r, const SimResult& clean) {
  double slowest = 0;
  for (const RoundReport& rep : r.reports) slowest = std::max(slowest, rep.seconds);
  std::printf("%-34s rounds %d/6  simulated %6.1f s (%4.1fx clean)  slowest round %5.1f s  "
              "registrations %d  tasks re-sent %lld\n",
              name, r.rounds, absl::ToDoubleSeconds(r.elapsed),
              absl::ToDoubleSeconds(r.elapsed) / absl::ToDoubleSeconds(clean.elapsed), slowest,
              r.registrations, static_cast<long long>(r.counters.tasks_resent));
}

void ExpectNoRoundWaitedItsDeadline(const SimResult& r) {
  ASSERT_TRUE(r.completed) << "rounds done: " << r.rounds;
  EXPECT_EQ(r.counters.round_retries, 0);
  for (const RoundReport& rep : r.reports) {
    EXPECT_EQ(rep.summary.reported, 5) << "round " << rep.summary.round;
    EXPECT_LT(rep.seconds, 60) << "round " << rep.summary.round;
  }
}

TEST(FleetSimTest, SlowAndLossyLinksCompleteEveryRound) {
  const SimResult clean = Simulate(SlowLinkFleet(std::nullopt));
  LinkOptions slow;
  slow.bits_per_second = 256000;
  slow.latency = absl::Milliseconds(20);
  const SimResult at_256k = Simulate(SlowLinkFleet(slow));
  LinkOptions lossy;
  lossy.bits_per_second = 0;
  lossy.latency = absl::Milliseconds(100);
  lossy.jitter = absl::Milliseconds(20);
  lossy.segment_loss = 0.05;
  const SimResult lossy_run = Simulate(SlowLinkFleet(lossy));
  LinkOptions both = slow;
  both.latency = absl::Milliseconds(100);
  both.jitter = absl::Milliseconds(20);
  both.segment_loss = 0.05;
  const SimResult both_run = Simulate(SlowLinkFleet(both));
  Report("clean", clean, clean);
  Report("256 kbit/s", at_256k, clean);
  Report("100 ms +- 20 ms, 5% loss", lossy_run, clean);
  Report("256 kbit/s, 100 ms +- 20 ms, 5% loss", both_run, clean);
  for (const SimResult* r : {&clean, &at_256k, &lossy_run, &both_run}) {
    ExpectNoRoundWaitedItsDeadline(*r);
    // Nobody took a slow download for a dead coordinator.
    EXPECT_EQ(r->registrations, 5);
  }
  // The model is the same whatever the link: every result was counted.
  EXPECT_EQ(at_256k.model.shards[2].values, clean.model.shards[2].values);
  EXPECT_EQ(both_run.model.shards[2].values, clean.model.shards[2].values);
}

TEST(FleetSimTest, ATooShortTimeoutCostsTimeButLosesNoTask) {
  // The old 10 s timeout at 256 kbit/s: agents give up on the coordinator
  // mid-download and register again. No task is lost to it: the agent keeps
  // a task whatever session it came in, says which it holds, and results
  // count across sessions.
  LinkOptions slow;
  slow.bits_per_second = 256000;
  SimOptions sim = SlowLinkFleet(slow);
  sim.coordinator_timeout = absl::Seconds(10);
  const SimResult r = Simulate(sim);
  Report("256 kbit/s, old 10 s agent timeout", r, Simulate(SlowLinkFleet(std::nullopt)));
  ASSERT_TRUE(r.completed) << "rounds done: " << r.rounds;
  EXPECT_GT(r.registrations, 5);  // it did re-register
  EXPECT_EQ(r.counters.tasks_resent, 0);  // same connection: nothing sent twice
  for (const RoundReport& rep : r.reports) EXPECT_EQ(rep.summary.reported, 5);
}

}  // namespace
}  // namespace fedge
