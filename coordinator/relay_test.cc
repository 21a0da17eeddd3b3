// Relays in a tree under the root, over the in-memory transport on a fake
// clock: the real root service, the real relay service and the real agent
// loop (synthetic executors, so every aggregate is known exactly).

#include "coordinator/relay.h"

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/transport/failover_transport.h"
#include "common/transport/testing/faulty_transport.h"
#include "common/transport/testing/in_memory_transport.h"
#include "common/wire/wire_codec.h"
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

struct AgentSpec {
  float value = 1;
  uint64_t samples = 100;
  std::vector<std::string> endpoints;  // relay names ("" = the root), in failover order
};

// The root, some relays and agents, each agent behind a failover link over
// its endpoints.
class Tree {
 public:
  Tree(int rounds, std::vector<std::string> relays, std::vector<AgentSpec> agents,
       AggregationRule rule = AggregationRule::kFedAvg,
       std::optional<std::set<std::string>> relay_ids = std::nullopt,
       std::optional<FaultOptions> faults = std::nullopt) {
    ServiceOptions options;
    options.run.schedule = {{Phase::kPretrain, rounds}};
    options.run.min_agents = static_cast<int>(agents.size());
    options.run.deadline = absl::Seconds(20);
    options.run.aggregation.rule = rule;
    options.downlink = Codec::kFp32;
    options.liveness.heartbeat_interval = absl::Seconds(1);
    options.liveness.timeout = absl::Seconds(5);
    options.relay_ids = std::move(relay_ids);
    options.log = false;
    root_options_ = options;
    root_link_ = networks_[""].Bind();
    root_ = std::make_unique<CoordinatorService>(
        options, InitialModel(), 0, root_link_.get(),
        [this](const RoundReport& r, const ModelState&) { reports.push_back(r); });
    // Faults on every link but the root's own sends: what a relay sends up
    // and down, and what agents send.
    auto faulty = [this, faults](std::unique_ptr<Transport> link, uint64_t seed) {
      if (!faults) return link;
      FaultOptions f = *faults;
      f.seed = faults->seed + seed;
      f.clock = [this] { return now; };
      return std::unique_ptr<Transport>(std::make_unique<FaultyTransport>(std::move(link), f));
    };
    for (const std::string& name : relays) {
      RelayOptions o;
      o.upstream.device_id = name;
      o.upstream.registration = Register{1 << 30, 1, 0, "relay"};
      o.upstream.register_retry = absl::Seconds(1);
      o.upstream.coordinator_timeout = absl::Seconds(10);
      o.liveness.heartbeat_interval = absl::Seconds(1);
      o.liveness.timeout = absl::Seconds(5);
      o.first_task_id = 1000000 * (relays_.size() + 1);
      o.log = false;
      RelayNode node;
      node.options = o;
      node.up = faulty(networks_[""].Connect(name), 100 + relays_.size());
      node.down = faulty(networks_[name].Bind(), 200 + relays_.size());
      node.service = std::make_unique<RelayService>(o, node.up.get(), node.down.get());
      relays_[name] = std::move(node);
    }
    for (size_t i = 0; i < agents.size(); ++i) {
      const std::string id = "sim-" + std::to_string(i);
      auto agent = std::make_unique<SimAgent>(agents[i]);
      auto connect = [this, id, i, faulty](const std::string& endpoint)
          -> absl::StatusOr<std::unique_ptr<Transport>> {
        return faulty(networks_[endpoint].Connect(id), 300 + i);
      };
      agent->link = *FailoverTransport::Create(agents[i].endpoints, connect);
      AgentLoopOptions o;
      o.session.device_id = id;
      o.session.registration = Register{64 << 20, 1, agents[i].samples, "sim"};
      o.session.register_retry = absl::Seconds(1);
      o.session.coordinator_timeout = absl::Seconds(30);
      FailoverTransport* link = agent->link.get();
      if (agents[i].endpoints.size() > 1) {
        o.fail_over = [link] { return link->Failover(); };
        o.failover_after = absl::Seconds(4);
      }
      agent->loop = std::make_unique<AgentLoop>(link, &agent->executor, o);
      agents_.push_back(std::move(agent));
    }
  }

  // Steps everything until the run is done or `limit` of fake time passed;
  // `each` runs before every turn.
  bool Run(absl::Duration limit, const std::function<void()>& each = nullptr) {
    const absl::Time end = now + limit;
    while (!root_->done() && now < end) {
      if (each) each();
      for (auto& [name, relay] : relays_) {
        if (!relay.dead) {
          EXPECT_TRUE(relay.service->Step(now, absl::ZeroDuration()).ok());
        }
      }
      for (auto& agent : agents_) agent->loop->Step(now, absl::ZeroDuration());
      for (int i = 0; i < 64; ++i) EXPECT_TRUE(root_->Step(now, absl::ZeroDuration()).ok());
      now += absl::Milliseconds(50);
    }
    return root_->done();
  }

  // The relay stops: no step, no answer, as after SIGKILL.
  void Kill(const std::string& relay) { relays_[relay].dead = true; }

  // The relay process restarts: nothing kept, a new connection each way
  // (what was in flight to the old one is gone), new task ids.
  void RestartRelay(const std::string& name) {
    RelayNode& node = relays_[name];
    node.service.reset();
    node.up.reset();
    node.down.reset();
    std::unique_ptr<Transport> up = networks_[""].Connect(name);
    while (true) {  // the old connection's undelivered packets die with it
      absl::StatusOr<std::optional<Packet>> stale = up->Receive(absl::ZeroDuration());
      if (!stale.ok() || !stale->has_value()) break;
    }
    node.up = std::move(up);
    node.down = networks_[name].Bind();
    node.options.first_task_id += 500000;
    node.service = std::make_unique<RelayService>(node.options, node.up.get(), node.down.get());
  }

  // The root restarts from its last checkpoint (the model after the rounds
  // it completed): a new service on a new socket, sessions forgotten.
  void RestartRoot() {
    ModelState model = root_->model();
    const uint64_t completed = root_->engine().completed_rounds();
    root_.reset();
    root_link_ = networks_[""].Bind();
    root_ = std::make_unique<CoordinatorService>(
        root_options_, std::move(model), completed, root_link_.get(),
        [this](const RoundReport& r, const ModelState&) { reports.push_back(r); });
  }

  const CoordinatorService& root() const { return *root_; }
  const RelayService& relay(const std::string& name) { return *relays_[name].service; }
  const AgentLoop& agent(int i) const { return *agents_[i]->loop; }

  absl::Time now = absl::FromUnixSeconds(1000);
  std::vector<RoundReport> reports;

 private:
  struct SimAgent {
    explicit SimAgent(const AgentSpec& spec) : executor({spec.value, spec.samples}) {}
    std::unique_ptr<FailoverTransport> link;
    SyntheticExecutor executor;
    std::unique_ptr<AgentLoop> loop;
  };
  struct RelayNode {
    RelayOptions options;
    std::unique_ptr<Transport> up, down;
    std::unique_ptr<RelayService> service;
    bool dead = false;
  };

  std::map<std::string, InMemoryNetwork> networks_;
  ServiceOptions root_options_;
  std::unique_ptr<Transport> root_link_;
  std::unique_ptr<CoordinatorService> root_;
  std::map<std::string, RelayNode> relays_;
  std::vector<std::unique_ptr<SimAgent>> agents_;
};

std::vector<AgentSpec> Fleet(const std::vector<std::vector<std::string>>& endpoints) {
  std::vector<AgentSpec> fleet;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    fleet.push_back({0.5f + 0.25f * static_cast<float>(i), 100 + 50 * i, endpoints[i]});
  }
  return fleet;
}

std::vector<AgentSpec> OnesBehindTwoRelays() {
  std::vector<AgentSpec> fleet = Fleet({{"relay-a", "relay-b"},
                                        {"relay-a", "relay-b"},
                                        {"relay-a", "relay-b"},
                                        {"relay-b", "relay-a"},
                                        {"relay-b", "relay-a"},
                                        {"relay-b", "relay-a"}});
  for (AgentSpec& a : fleet) a.value = 1;
  return fleet;
}

TEST(RelayTest, TreeAggregatesExactlyAsTheFlatFleet) {
  // Six agents with different values and sample counts: all on the root,
  // then three behind each of two relays (and, mixed, two of them direct).
  Tree flat(3, {}, Fleet({{""}, {""}, {""}, {""}, {""}, {""}}));
  ASSERT_TRUE(flat.Run(absl::Minutes(5)));
  Tree tree(3, {"relay-a", "relay-b"},
            Fleet({{"relay-a"}, {"relay-a"}, {"relay-a"}, {"relay-b"}, {"relay-b"}, {"relay-b"}}));
  ASSERT_TRUE(tree.Run(absl::Minutes(5)));
  Tree mixed(3, {"relay-a"}, Fleet({{"relay-a"}, {"relay-a"}, {"relay-a"}, {""}, {""}, {""}}));
  ASSERT_TRUE(mixed.Run(absl::Minutes(5)));

  // Expected per round: the sample-weighted mean of the agents' values.
  double sum = 0, weight = 0;
  for (const AgentSpec& a : Fleet({{""}, {""}, {""}, {""}, {""}, {""}})) {
    sum += a.value * a.samples;
    weight += static_cast<double>(a.samples);
  }
  const float expected = static_cast<float>(3 * sum / weight);
  for (const Tree* run : {&flat, &tree, &mixed}) {
    for (const ModelShard& shard : run->root().model().shards) {
      for (float v : shard.values) ASSERT_NEAR(v, expected, 1e-5) << shard.name;
    }
  }
  ASSERT_EQ(tree.reports.size(), 3u);
  for (const RoundReport& r : tree.reports) {
    EXPECT_EQ(r.summary.sampled, 6);
    EXPECT_EQ(r.summary.reported, 6);  // counted in agents, not relays
    EXPECT_EQ(r.summary.relays, 2);
    EXPECT_EQ(r.summary.failed, 0);
  }
  EXPECT_EQ(mixed.reports[0].summary.reported, 6);
  EXPECT_EQ(mixed.reports[0].summary.relays, 1);
  // The root knows the relays with their load, not their agents.
  const AgentRecord* a = tree.root().registry().Find("relay-a");
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(a->relay);
  EXPECT_EQ(a->relay_load.agents, 3u);
  EXPECT_EQ(a->relay_load.samples, 100u + 150u + 200u);
  EXPECT_EQ(tree.root().registry().Find("sim-0"), nullptr);
  EXPECT_EQ(tree.root().registry().live_agents(), 6u);
  EXPECT_EQ(tree.relay("relay-a").counters().rounds, 3);
  EXPECT_EQ(tree.relay("relay-b").counters().agents_reported, 9);
}

TEST(RelayTest, AKilledRelayCostsItsAgentsOneRoundAndTheyMoveToTheOther) {
  Tree tree(4, {"relay-a", "relay-b"}, OnesBehindTwoRelays());
  bool killed = false;
  ASSERT_TRUE(tree.Run(absl::Minutes(10), [&] {
    // Mid-round 2: relay-a has handed out its tasks and dies with them.
    if (!killed && tree.reports.size() == 1 && tree.relay("relay-a").in_round()) {
      tree.Kill("relay-a");
      killed = true;
    }
  }));
  ASSERT_TRUE(killed);
  ASSERT_EQ(tree.reports.size(), 4u);
  EXPECT_EQ(tree.reports[0].summary.reported, 6);
  // The round relay-a died in completed with relay-b's agents.
  EXPECT_GE(tree.reports[1].summary.reported, 3);
  EXPECT_LT(tree.reports[1].summary.reported, 6);
  EXPECT_GE(tree.reports[1].summary.failed, 3);
  // Afterwards all six train through relay-b.
  EXPECT_EQ(tree.reports[3].summary.reported, 6);
  EXPECT_EQ(tree.reports[3].summary.relays, 1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(tree.agent(i).failovers(), 1) << i;
  for (int i = 3; i < 6; ++i) EXPECT_EQ(tree.agent(i).failovers(), 0) << i;
  // Every round moved the model by exactly 1 (every agent sends 1).
  for (const ModelShard& shard : tree.root().model().shards) {
    for (float v : shard.values) ASSERT_NEAR(v, 4.0f, 1e-5);
  }
}

TEST(RelayTest, DroppedDuplicatedAndReorderedFramesAroundRelaysLoseNoRound) {
  FaultOptions faults;
  faults.drop = 0.05;
  faults.duplicate = 0.05;
  faults.reorder = 0.05;
  faults.seed = 11;
  Tree tree(4, {"relay-a", "relay-b"}, OnesBehindTwoRelays(), AggregationRule::kFedAvg,
            std::nullopt, faults);
  ASSERT_TRUE(tree.Run(absl::Minutes(20)));
  ASSERT_EQ(tree.reports.size(), 4u);
  int reported = 0;
  for (const RoundReport& r : tree.reports) reported += r.summary.reported;
  EXPECT_GE(reported, 12);  // lost results cost agents, never a round
  // Every agent sends 1: whoever reports, each round moves the model by 1.
  for (const ModelShard& shard : tree.root().model().shards) {
    for (float v : shard.values) ASSERT_NEAR(v, 4.0f, 1e-5);
  }
}

TEST(RelayTest, CorruptedFramesAroundRelaysAreRefusedOrHarmless) {
  FaultOptions faults;
  faults.corrupt = 0.05;
  faults.seed = 5;
  Tree tree(4, {"relay-a", "relay-b"}, OnesBehindTwoRelays(), AggregationRule::kFedAvg,
            std::nullopt, faults);
  ASSERT_TRUE(tree.Run(absl::Minutes(20)));
  ASSERT_EQ(tree.reports.size(), 4u);
  // A flipped byte either fails to decode (refused, counted) or changes
  // values within the magnitude bound: the model stays finite and bounded.
  for (const ModelShard& shard : tree.root().model().shards) {
    for (float v : shard.values) ASSERT_TRUE(std::isfinite(v) && std::abs(v) <= 400) << v;
  }
}

TEST(RelayTest, ARestartedRootTakesTheRelaysBackAndTheRunCompletes) {
  Tree tree(4, {"relay-a", "relay-b"}, OnesBehindTwoRelays());
  bool restarted = false;
  ASSERT_TRUE(tree.Run(absl::Minutes(10), [&] {
    // Mid-round 3, as if the root crashed and came back from its checkpoint.
    if (!restarted && tree.reports.size() == 2 && tree.root().engine().in_round()) {
      tree.RestartRoot();
      restarted = true;
    }
  }));
  ASSERT_TRUE(restarted);
  ASSERT_EQ(tree.reports.size(), 4u);  // rounds 1-2 before, 3-4 after
  EXPECT_EQ(tree.reports[2].summary.round, 3u);
  EXPECT_EQ(tree.reports[3].summary.reported, 6);
  EXPECT_EQ(tree.root().registry().live_agents(), 6u);
  for (const ModelShard& shard : tree.root().model().shards) {
    for (float v : shard.values) ASSERT_NEAR(v, 4.0f, 1e-5);
  }
}

TEST(RelayTest, ARestartedRelayGetsItsTaskAgainAndItsAgentsBack) {
  Tree tree(3, {"relay-a", "relay-b"},
            Fleet({{"relay-a"}, {"relay-a"}, {"relay-a"}, {"relay-b"}, {"relay-b"}, {"relay-b"}}));
  bool restarted = false;
  ASSERT_TRUE(tree.Run(absl::Minutes(10), [&] {
    // Round 2 out to relay-a's agents: the relay restarts, keeping nothing.
    if (!restarted && tree.reports.size() == 1 && tree.relay("relay-a").in_round()) {
      tree.RestartRelay("relay-a");
      restarted = true;
    }
  }));
  ASSERT_TRUE(restarted);
  ASSERT_EQ(tree.reports.size(), 3u);
  // The root sent the restarted relay its task again; the agents registered
  // with it anew and trained: no agent was lost to the restart.
  for (const RoundReport& r : tree.reports) EXPECT_EQ(r.summary.reported, 6) << r.summary.round;
  EXPECT_EQ(tree.root().counters().tasks_resent, 1);
  EXPECT_EQ(tree.relay("relay-a").counters().rounds, 2);  // rounds 2 and 3
}

TEST(RelayTest, AnAgentCannotRegisterWithARelayAsARelay) {
  InMemoryNetwork net, root_net;
  std::unique_ptr<Transport> down = net.Bind();
  std::unique_ptr<Transport> up = root_net.Connect("relay-a");
  RelayOptions o;
  o.upstream.device_id = "relay-a";
  o.upstream.registration = Register{1 << 30, 1, 0, "relay"};
  o.log = false;
  RelayService relay(o, up.get(), down.get());
  std::unique_ptr<Transport> agent = net.Connect("sim-0");
  Message m;
  m.device_id = "sim-0";
  m.body = Register{1 << 20, 1, 100, "agent", 0, true, RelayLoad{5, 500, 1 << 20}};
  Packet p;
  p.frames = *EncodeMessage(m);
  ASSERT_TRUE(agent->Send(std::move(p)).ok());
  ASSERT_TRUE(relay.Step(absl::FromUnixSeconds(1000), absl::ZeroDuration()).ok());
  absl::StatusOr<std::optional<Packet>> reply = agent->Receive(absl::ZeroDuration());
  ASSERT_TRUE(reply.ok() && reply->has_value());
  absl::StatusOr<Message> answer = DecodeMessage((**reply).frames);
  ASSERT_TRUE(answer.ok());
  ASSERT_TRUE(std::holds_alternative<Reject>(answer->body));
  EXPECT_NE(std::get<Reject>(answer->body).reason.find("relays connect to the root"), std::string::npos);
  EXPECT_EQ(relay.counters().rejections.at("wrong_role"), 1);
  EXPECT_EQ(relay.registry().registered(), 0u);
}

TEST(RelayTest, RelayRefusesABadResultWholeAndReportsItUpward) {
  std::vector<AgentSpec> fleet = Fleet({{"relay-a"}, {"relay-a"}, {"relay-a"}});
  fleet[1].value = std::nanf("");
  for (AgentSpec& a : {std::ref(fleet[0]), std::ref(fleet[2])}) a.value = 2;
  Tree tree(1, {"relay-a"}, fleet);
  ASSERT_TRUE(tree.Run(absl::Minutes(2)));
  ASSERT_EQ(tree.reports.size(), 1u);
  const RoundSummary& s = tree.reports[0].summary;
  EXPECT_EQ(s.reported, 2);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.rejected, 1);
  EXPECT_EQ(s.relay_rejections.at("non_finite"), 1);
  EXPECT_EQ(tree.relay("relay-a").counters().rejections.at("non_finite"), 1);
  for (const ModelShard& shard : tree.root().model().shards) {
    for (float v : shard.values) ASSERT_NEAR(v, 2.0f, 1e-6);
  }
}

TEST(RelayTest, RobustRulesApplyPerRelayAndTheRootAveragesTheRelays) {
  // Median in a tree: each relay takes the median over its own agents (the
  // outlier under relay-a is voted out there), the root the sample-weighted
  // mean of the relays' medians.
  std::vector<AgentSpec> fleet = Fleet({{"relay-a"}, {"relay-a"}, {"relay-a"},
                                        {"relay-b"}, {"relay-b"}, {"relay-b"}});
  const float values[] = {1, 1, 100, 3, 3, 4};
  for (size_t i = 0; i < fleet.size(); ++i) {
    fleet[i].value = values[i];
    fleet[i].samples = 100;
  }
  Tree tree(1, {"relay-a", "relay-b"}, fleet, AggregationRule::kMedian);
  ASSERT_TRUE(tree.Run(absl::Minutes(2)));
  // relay-a: median 1 over 300 samples; relay-b: median 3 over 300.
  for (const ModelShard& shard : tree.root().model().shards) {
    for (float v : shard.values) ASSERT_NEAR(v, 2.0f, 1e-6);
  }
}

TEST(RelayTest, RolesFollowTheEnrolment) {
  // relay-a is enrolled as a relay; sim-0 as an agent. sim-0 trying to act
  // as a relay, and relay-a trying to register as an agent, are refused.
  InMemoryNetwork net;
  std::unique_ptr<Transport> server = net.Bind();
  ServiceOptions options;
  options.relay_ids = std::set<std::string>{"relay-a"};
  options.log = false;
  CoordinatorService root(options, InitialModel(), 0, server.get(), nullptr);
  auto send = [&](const std::string& id, Register reg) {
    std::unique_ptr<Transport> link = net.Connect(id);
    Message m;
    m.device_id = id;
    m.body = reg;
    Packet p;
    p.frames = *EncodeMessage(m);
    EXPECT_TRUE(link->Send(std::move(p)).ok());
    const absl::Time now = absl::FromUnixSeconds(1000);
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(root.Step(now, absl::ZeroDuration()).ok());
    absl::StatusOr<std::optional<Packet>> reply = link->Receive(absl::ZeroDuration());
    EXPECT_TRUE(reply.ok() && reply->has_value());
    return std::move(*DecodeMessage((**reply).frames));
  };
  Register as_relay{1 << 20, 1, 0, "relay", 0, true, RelayLoad{2, 200, 1 << 20}};
  Register as_agent{1 << 20, 1, 100, "agent"};
  Message m = send("sim-0", as_relay);
  ASSERT_TRUE(std::holds_alternative<Reject>(m.body));
  EXPECT_NE(std::get<Reject>(m.body).reason.find("not enrolled as a relay"), std::string::npos);
  m = send("relay-a", as_agent);
  ASSERT_TRUE(std::holds_alternative<Reject>(m.body));
  EXPECT_NE(std::get<Reject>(m.body).reason.find("enrolled as a relay"), std::string::npos);
  EXPECT_EQ(root.counters().rejections.at("wrong_role"), 2);
  EXPECT_EQ(root.registry().registered(), 0u);
  // Each in its own role is welcome.
  EXPECT_TRUE(std::holds_alternative<Welcome>(send("relay-a", as_relay).body));
  EXPECT_TRUE(std::holds_alternative<Welcome>(send("sim-0", as_agent).body));
  EXPECT_EQ(root.registry().live_agents(), 3u);  // sim-0 and relay-a's two
}

}  // namespace
}  // namespace fedge
