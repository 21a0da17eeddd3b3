// The relay's metrics and the root's view of its relays, after a round
// through a relay over the in-memory transport.

#include "coordinator/ops/relay_metrics.h"

#include <memory>
#include <string>
#include <vector>

#include "common/transport/testing/in_memory_transport.h"
#include "coordinator/ops/metrics.h"
#include "coordinator/ops/prometheus_text.h"
#include "coordinator/service.h"
#include "device_agent/agent_loop.h"
#include "device_agent/testing/synthetic_executor.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(RelayMetricsTest, RelayAndRootReportTheTree) {
  InMemoryNetwork root_net, relay_net;
  std::unique_ptr<Transport> root_link = root_net.Bind();
  ModelState model;
  model.shards = {{"layer0.weight", 0, {4, 8}, std::vector<float>(32, 0.0f)}};
  ServiceOptions options;
  options.run.schedule = {{Phase::kPretrain, 1}};
  options.run.min_agents = 2;
  options.relay_ids = std::set<std::string>{"relay-a"};
  options.log = false;
  std::vector<RoundReport> reports;
  CoordinatorService root(options, model, 0, root_link.get(),
                          [&](const RoundReport& r, const ModelState&) { reports.push_back(r); });

  RelayOptions relay_options;
  relay_options.upstream.device_id = "relay-a";
  relay_options.upstream.registration = Register{1 << 30, 1, 0, "relay"};
  relay_options.log = false;
  std::unique_ptr<Transport> up = root_net.Connect("relay-a");
  std::unique_ptr<Transport> down = relay_net.Bind();
  RelayService relay(relay_options, up.get(), down.get());

  struct Agent {
    std::unique_ptr<Transport> link;
    std::unique_ptr<SyntheticExecutor> executor;
    std::unique_ptr<AgentLoop> loop;
  };
  std::vector<Agent> agents;
  for (int i = 0; i < 2; ++i) {
    Agent a;
    const std::string id = "board-" + std::to_string(i);
    a.link = relay_net.Connect(id);
    a.executor = std::make_unique<SyntheticExecutor>(SyntheticTaskOptions{});
    AgentLoopOptions o;
    o.session.device_id = id;
    o.session.registration = Register{64 << 20, 1, 100, "test"};
    a.loop = std::make_unique<AgentLoop>(a.link.get(), a.executor.get(), o);
    agents.push_back(std::move(a));
  }
  absl::Time now = absl::FromUnixSeconds(1000);
  for (int step = 0; step < 400 && !root.done(); ++step) {
    ASSERT_TRUE(relay.Step(now, absl::ZeroDuration()).ok());
    for (Agent& a : agents) a.loop->Step(now, absl::ZeroDuration());
    for (int i = 0; i < 8; ++i) ASSERT_TRUE(root.Step(now, absl::ZeroDuration()).ok());
    now += absl::Milliseconds(100);
  }
  ASSERT_TRUE(root.done());
  ASSERT_TRUE(relay.Step(now, absl::ZeroDuration()).ok());  // the root's acknowledgement

  absl::StatusOr<std::unique_ptr<RelayMetrics>> relay_metrics = RelayMetrics::Start({});
  ASSERT_TRUE(relay_metrics.ok());
  (*relay_metrics)->Publish(relay, now);
  absl::StatusOr<std::vector<PromSample>> r = ParsePrometheusText((*relay_metrics)->Render());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(FindSample(*r, "fedge_relay_agents_live"), 2);
  EXPECT_EQ(FindSample(*r, "fedge_relay_upstream_ready"), 1);
  EXPECT_EQ(FindSample(*r, "fedge_relay_partials_total"), 1);
  EXPECT_EQ(FindSample(*r, "fedge_relay_agents_reported_total"), 2);
  EXPECT_EQ(FindSample(*r, "fedge_relay_agents_failed_total"), 0);
  EXPECT_EQ(FindSample(*r, "fedge_relay_round_in_progress"), 0);
  EXPECT_GT(*FindSample(*r, "fedge_relay_bytes_sent_total"), 0);

  absl::StatusOr<std::unique_ptr<CoordinatorMetrics>> root_metrics = CoordinatorMetrics::Start({});
  ASSERT_TRUE(root_metrics.ok());
  (*root_metrics)->Publish(root, now);
  absl::StatusOr<std::vector<PromSample>> m = ParsePrometheusText((*root_metrics)->Render());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(FindSample(*m, "fedge_agents_live"), 1);  // the relay
  EXPECT_EQ(FindSample(*m, "fedge_fleet_agents_live"), 2);
  EXPECT_EQ(FindSample(*m, "fedge_relay_agents", {{"relay", "relay-a"}}), 2);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].summary.reported, 2);
  EXPECT_EQ(reports[0].summary.relays, 1);
}

}  // namespace
}  // namespace fedge
