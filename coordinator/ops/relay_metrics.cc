#include "coordinator/ops/relay_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <map>
#include <utility>

#include "common/status/reject_reason.h"
#include "common/status/status_macros.h"
#include "coordinator/ops/http_server.h"

namespace fedge {

using prometheus::Counter;
using prometheus::Gauge;

struct RelayMetrics::State {
  MetricsOptions options;
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<HttpServer> server;
  std::atomic<bool> ready{false};
  std::atomic<int64_t> last_publish_ns{0};

  Gauge* registered = nullptr;
  Gauge* live = nullptr;
  Gauge* upstream = nullptr;
  Gauge* in_round = nullptr;
  // Counters with what has been added to each so far (they only go up).
  std::map<std::string, std::pair<Counter*, int64_t>> counters;
  prometheus::Family<Counter>* rejected = nullptr;
  std::map<std::string, int64_t> published_rejections;

  void Advance(const std::string& name, int64_t total) {
    auto& [counter, published] = counters.at(name);
    if (total > published) {
      counter->Increment(static_cast<double>(total - published));
      published = total;
    }
  }
};

namespace {
Gauge* NewGauge(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}
}  // namespace

absl::StatusOr<std::unique_ptr<RelayMetrics>> RelayMetrics::Start(const MetricsOptions& options) {
  auto state = std::make_unique<State>();
  state->options = options;
  State& s = *state;
  prometheus::Registry& r = *s.registry;
  s.registered = NewGauge(r, "fedge_relay_agents_registered", "Agents that registered with this relay.");
  s.live = NewGauge(r, "fedge_relay_agents_live", "Agents heard from within the liveness timeout.");
  s.upstream = NewGauge(r, "fedge_relay_upstream_ready", "1 while the root has welcomed this relay.");
  s.in_round = NewGauge(r, "fedge_relay_round_in_progress", "1 while a round's task is out to agents.");
  const std::pair<const char*, const char*> counters[] = {
      {"fedge_relay_partials_total", "Rounds answered upward with a partial."},
      {"fedge_relay_rounds_failed_total", "Rounds none of the relay's agents delivered."},
      {"fedge_relay_rounds_dropped_total", "Rounds the root moved on from before the partial was ready."},
      {"fedge_relay_agents_reported_total", "Agent results folded into partials."},
      {"fedge_relay_agents_failed_total", "Agent tasks failed, lost, timed out or refused."},
      {"fedge_relay_messages_received_total", "Messages received from agents."},
      {"fedge_relay_messages_sent_total", "Messages sent to agents."},
      {"fedge_relay_bytes_received_total", "Frame bytes received from agents."},
      {"fedge_relay_bytes_sent_total", "Frame bytes sent to agents (the downlink fan-out)."},
      {"fedge_relay_upstream_messages_sent_total", "Messages sent to the root."}};
  for (const auto& [name, help] : counters) {
    s.counters[name] = {&prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({}), 0};
  }
  s.rejected = &prometheus::BuildCounter()
                    .Name("fedge_relay_updates_rejected_total")
                    .Help("Messages and agent results the relay turned away, by reason.")
                    .Register(r);
  for (RejectReason reason : kAllRejectReasons) s.rejected->Add({{"reason", ReasonLabel(reason)}});

  std::unique_ptr<RelayMetrics> metrics(new RelayMetrics(std::move(state)));
  if (!options.address.empty()) {
    RelayMetrics* self = metrics.get();
    ASSIGN_OR_RETURN(metrics->state_->server,
                     StartOperatorEndpoints(options, [self] { return self->Render(); },
                                            &self->state_->last_publish_ns, &self->state_->ready,
                                            "not welcomed by the root yet"));
  }
  return metrics;
}

RelayMetrics::RelayMetrics(std::unique_ptr<State> state) : state_(std::move(state)) {}

RelayMetrics::~RelayMetrics() { state_->server.reset(); }

void RelayMetrics::Publish(const RelayService& relay, absl::Time now) {
  State& s = *state_;
  s.last_publish_ns = absl::ToUnixNanos(now);
  const bool welcomed = relay.upstream().state() == AgentSession::State::kReady;
  s.ready = welcomed;
  s.upstream->Set(welcomed ? 1 : 0);
  s.registered->Set(static_cast<double>(relay.registry().registered()));
  s.live->Set(static_cast<double>(relay.registry().live()));
  s.in_round->Set(relay.in_round() ? 1 : 0);
  const RelayCounters& c = relay.counters();
  s.Advance("fedge_relay_partials_total", c.rounds);
  s.Advance("fedge_relay_rounds_failed_total", c.rounds_failed);
  s.Advance("fedge_relay_rounds_dropped_total", c.rounds_dropped);
  s.Advance("fedge_relay_agents_reported_total", c.agents_reported);
  s.Advance("fedge_relay_agents_failed_total", c.agents_failed);
  s.Advance("fedge_relay_messages_received_total", c.messages_in);
  s.Advance("fedge_relay_messages_sent_total", c.messages_out);
  s.Advance("fedge_relay_bytes_received_total", c.bytes_in);
  s.Advance("fedge_relay_bytes_sent_total", c.bytes_out);
  s.Advance("fedge_relay_upstream_messages_sent_total", c.upstream_out);
  for (const auto& [reason, total] : c.rejections) {
    int64_t& published = s.published_rejections[reason];
    if (total > published) {
      s.rejected->Add({{"reason", reason}}).Increment(static_cast<double>(total - published));
      published = total;
    }
  }
}

std::string RelayMetrics::Render() const {
  return prometheus::TextSerializer().Serialize(state_->registry->Collect());
}

int RelayMetrics::port() const { return state_->server ? state_->server->port() : 0; }

}  // namespace fedge
