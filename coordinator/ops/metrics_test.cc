#include "coordinator/ops/metrics.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "absl/strings/str_cat.h"
#include "coordinator/ops/http_client.h"
#include "common/transport/testing/in_memory_transport.h"
#include "coordinator/ops/prometheus_text.h"
#include "common/codec/update_codec.h"
#include "common/wire/wire_codec.h"
#include "device_agent/agent_loop.h"
#include "device_agent/testing/synthetic_executor.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

ModelState TinyModel() {
  ModelState m;
  m.shards = {{"layer0.weight", 0, {4, 8}, std::vector<float>(32, 0.0f)}};
  return m;
}

// One agent on the in-memory network: the real agent loop registers and
// heartbeats; its tasks never finish on their own, the test answers them by
// hand (a good answer, a duplicate, a NaN, a late one).
struct Agent {
  Agent(InMemoryNetwork& net, const std::string& id)
      : transport(net.Connect(id)),
        executor({0, 100, absl::InfiniteDuration()}),
        loop(transport.get(), &executor, [&] {
          AgentLoopOptions o;
          o.session.device_id = id;
          o.session.registration = Register{64 << 20, 1, 100, "test"};
          return o;
        }()) {}

  void Send(const Message& m) {
    Packet p;
    p.frames = EncodeMessage(m).value();
    ASSERT_TRUE(transport->Send(std::move(p)).ok());
  }
  void Pump(absl::Time now) { loop.Step(now, absl::ZeroDuration()); }
  TaskResult Answer(const Task& task, float value) {
    TaskResult r;
    r.round_id = task.round_id;
    r.task_id = task.task_id;
    r.model_version = task.model_version;
    r.samples = 100;
    r.peak_memory_bytes = 5 << 20;
    for (const WireTensor& shard : task.shards) {
      WireTensor u;
      u.layer = shard.layer;
      u.name = shard.name;
      u.shape = shard.shape;
      std::vector<float> delta(shard.numel(), std::isfinite(value) ? value : 0.0f);
      EXPECT_TRUE(EncodeUpdate(delta, {Codec::kFp32, 0, 1}, 0, nullptr, &u).ok());
      if (!std::isfinite(value)) {
        // The encoder refuses non-finite values; a broken agent would not.
        EXPECT_GE(u.payload.size(), sizeof(float));
        std::memcpy(&u.payload[0], &value, sizeof(float));
      }
      r.updates.push_back(std::move(u));
    }
    return r;
  }

  std::unique_ptr<Transport> transport;
  SyntheticExecutor executor;
  AgentLoop loop;
};

TEST(CoordinatorMetricsTest, CountsAcceptedAndRejectedUpdatesByReason) {
  InMemoryNetwork net;
  std::unique_ptr<Transport> server = net.Bind();
  ServiceOptions options;
  options.run.schedule = {{Phase::kLearnPrecision, 2}};
  options.run.min_agents = 2;
  options.run.deadline = absl::Seconds(30);
  options.downlink = Codec::kFp32;
  options.log = false;
  std::vector<RoundReport> reports;
  CoordinatorService service(options, TinyModel(), 0, server.get(),
                             [&](const RoundReport& r, const ModelState&) { reports.push_back(r); });
  absl::StatusOr<std::unique_ptr<CoordinatorMetrics>> metrics = CoordinatorMetrics::Start({});
  ASSERT_TRUE(metrics.ok()) << metrics.status();

  Agent good(net, "good"), bad(net, "bad");
  absl::Time now = absl::FromUnixSeconds(1000);
  auto run = [&] {
    for (int i = 0; i < 10; ++i) {
      now += absl::Milliseconds(10);
      good.Pump(now);
      bad.Pump(now);
      for (int k = 0; k < 10; ++k) ASSERT_TRUE(service.Step(now, absl::ZeroDuration()).ok());
    }
  };
  run();
  // A frame that is not a message.
  Packet garbage;
  garbage.frames = {"not a message"};
  ASSERT_TRUE(good.transport->Send(std::move(garbage)).ok());
  run();
  std::optional<Task> good_task = good.executor.last_task();
  std::optional<Task> bad_task = bad.executor.last_task();
  ASSERT_TRUE(good_task && bad_task);
  good.Send(good.loop.session().Wrap(good.Answer(*good_task, 0.5f)));
  good.Send(good.loop.session().Wrap(good.Answer(*good_task, 0.5f)));  // again: a duplicate
  bad.Send(bad.loop.session().Wrap(bad.Answer(*bad_task, std::numeric_limits<float>::quiet_NaN())));
  run();
  (*metrics)->Publish(service, now);
  ASSERT_EQ(reports.size(), 1u);
  ModelStats stats{0.75, 12345, 2.5, 4.0};
  (*metrics)->OnRound(reports[0], stats);

  absl::StatusOr<std::vector<PromSample>> samples = ParsePrometheusText((*metrics)->Render());
  ASSERT_TRUE(samples.ok()) << samples.status();
  auto value = [&](const std::string& name, std::map<std::string, std::string> labels = {}) {
    std::optional<double> v = FindSample(*samples, name, labels);
    EXPECT_TRUE(v.has_value()) << name;
    return v.value_or(-1);
  };
  EXPECT_EQ(value("fedge_agents_registered"), 2);
  EXPECT_EQ(value("fedge_agents_live"), 2);
  EXPECT_EQ(value("fedge_updates_accepted_total"), 1);
  EXPECT_EQ(value("fedge_updates_rejected_total", {{"reason", "non_finite"}}), 1);
  EXPECT_EQ(value("fedge_updates_rejected_total", {{"reason", "duplicate"}}), 1);
  EXPECT_EQ(value("fedge_updates_rejected_total", {{"reason", "malformed_message"}}), 1);
  EXPECT_EQ(value("fedge_updates_rejected_total", {{"reason", "norm_bound"}}), 0);
  EXPECT_EQ(value("fedge_rounds_completed"), 1);
  EXPECT_EQ(value("fedge_rounds_planned"), 2);
  EXPECT_EQ(value("fedge_phase", {{"phase", "learn-precision"}}), 1);
  EXPECT_EQ(value("fedge_phase", {{"phase", "pretrain"}}), 0);
  EXPECT_EQ(value("fedge_model_test_accuracy"), 0.75);
  EXPECT_EQ(value("fedge_model_size_bytes"), 12345);
  EXPECT_EQ(value("fedge_model_parameters"), 32);
  EXPECT_EQ(value("fedge_device_peak_memory_bytes"), 5 << 20);
  EXPECT_EQ(value("fedge_round_duration_seconds_count"), 1);
  EXPECT_GT(value("fedge_bytes_received_total"), 2 * 32 * 4);
  EXPECT_GT(value("fedge_bytes_sent_total"), 2 * 32 * 4);
  EXPECT_EQ(value("fedge_messages_received_total"), service.counters().messages);
  // The counters follow the service as it goes on, never backwards.
  bad.Send(bad.loop.session().Wrap(bad.Answer(*bad_task, 1.0f)));  // its task is over by now
  run();
  (*metrics)->Publish(service, now);
  samples = ParsePrometheusText((*metrics)->Render());
  ASSERT_TRUE(samples.ok());
  EXPECT_EQ(value("fedge_updates_rejected_total", {{"reason", "outside_round"}}), 1);
  EXPECT_EQ(value("fedge_updates_rejected_total", {{"reason", "duplicate"}}), 1);
}

TEST(CoordinatorMetricsTest, EveryReasonIsASeriesFromTheStart) {
  // Alerts on rate(...) need the series before the first event.
  absl::StatusOr<std::unique_ptr<CoordinatorMetrics>> metrics = CoordinatorMetrics::Start({});
  ASSERT_TRUE(metrics.ok());
  const std::string text = (*metrics)->Render();
  for (RejectReason reason : kAllRejectReasons) {
    EXPECT_NE(text.find(absl::StrCat("fedge_updates_rejected_total{reason=\"", ReasonLabel(reason),
                                     "\"} 0")),
              std::string::npos)
        << ReasonLabel(reason);
  }
  for (const char* reason : kDropReasons) {
    EXPECT_NE(text.find(absl::StrCat("fedge_replies_dropped_total{reason=\"", reason, "\"} 0")),
              std::string::npos)
        << reason;
  }
}

TEST(CoordinatorMetricsTest, ServesMetricsHealthAndReadiness) {
  InMemoryNetwork net;
  std::unique_ptr<Transport> server = net.Bind();
  ServiceOptions options;
  options.log = false;
  CoordinatorService service(options, TinyModel(), 0, server.get(), nullptr);
  MetricsOptions metrics_options;
  metrics_options.address = "127.0.0.1:0";
  metrics_options.stall_timeout = absl::Seconds(30);
  absl::StatusOr<std::unique_ptr<CoordinatorMetrics>> metrics =
      CoordinatorMetrics::Start(metrics_options);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const std::string base = "http://127.0.0.1:" + std::to_string((*metrics)->port());

  absl::StatusOr<HttpResponse> ready = HttpGet(base + "/readyz", absl::Seconds(5));
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->status, 503);
  (*metrics)->SetReady(true);
  EXPECT_EQ(HttpGet(base + "/readyz", absl::Seconds(5))->status, 200);

  (*metrics)->Publish(service, absl::Now());
  absl::StatusOr<HttpResponse> body = HttpGet(base + "/metrics", absl::Seconds(5));
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(body->status, 200);
  EXPECT_NE(body->content_type.find("version=0.0.4"), std::string::npos);
  absl::StatusOr<std::vector<PromSample>> samples = ParsePrometheusText(body->body);
  ASSERT_TRUE(samples.ok()) << samples.status();
  EXPECT_EQ(FindSample(*samples, "fedge_round"), 1);
  EXPECT_EQ(FindSample(*samples, "fedge_phase", {{"phase", "pretrain"}}), 1);
  EXPECT_EQ(FindSample(*samples, "fedge_model_test_accuracy"), -1);  // not evaluated

  EXPECT_EQ(HttpGet(base + "/healthz", absl::Seconds(5))->status, 200);
  // The loop last turned two minutes ago: stuck.
  (*metrics)->Publish(service, absl::Now() - absl::Minutes(2));
  absl::StatusOr<HttpResponse> health = HttpGet(base + "/healthz", absl::Seconds(5));
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 503);
  EXPECT_NE(health->body.find("stalled"), std::string::npos);
}

}  // namespace
}  // namespace fedge
