#include "coordinator/ops/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "coordinator/ops/http_server.h"

namespace fedge {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;

struct CoordinatorMetrics::State {
  MetricsOptions options;
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<HttpServer> server;
  std::atomic<bool> ready{false};
  std::atomic<int64_t> last_publish_ns{0};

  Gauge* registered = nullptr;
  Gauge* live = nullptr;
  Gauge* fleet_live = nullptr;
  prometheus::Family<Gauge>* relay_agents = nullptr;
  std::map<std::string, Gauge*> relay_gauges;
  prometheus::Family<Counter>* relay_rejected = nullptr;
  Gauge* round = nullptr;
  Gauge* rounds_completed = nullptr;
  Gauge* rounds_planned = nullptr;
  Gauge* in_round = nullptr;
  std::map<Phase, Gauge*> phase;
  Gauge* last_round_seconds = nullptr;
  prometheus::Histogram* round_seconds = nullptr;
  Counter* accepted = nullptr;
  Family<Counter>* rejected = nullptr;
  Family<Counter>* dropped = nullptr;
  Counter* tasks_resent = nullptr;
  Counter* round_retries = nullptr;
  Counter* checkpoint_failures = nullptr;
  Counter* messages_in = nullptr;
  Counter* messages_out = nullptr;
  Counter* bytes_in = nullptr;
  Counter* bytes_out = nullptr;
  Counter* uplink_update_bytes = nullptr;
  Gauge* model_bytes = nullptr;
  Gauge* model_parameters = nullptr;
  Gauge* weight_bits = nullptr;
  Gauge* activation_bits = nullptr;
  Gauge* accuracy = nullptr;
  Gauge* device_peak = nullptr;
  Gauge* device_rss = nullptr;
  Counter* downlink_bytes = nullptr;
  Gauge* up_since = nullptr;

  // What has been added to each counter so far (they only go up).
  ServiceCounters published;

  static void Advance(Counter* c, int64_t total, int64_t* published) {
    if (total > *published) {
      c->Increment(static_cast<double>(total - *published));
      *published = total;
    }
  }
};

namespace {

Gauge* NewGauge(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

Counter* NewCounter(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> StartOperatorEndpoints(
    const MetricsOptions& options, std::function<std::string()> render,
    const std::atomic<int64_t>* last_publish_ns, const std::atomic<bool>* ready,
    std::string not_ready) {
  HttpServerOptions http;
  http.address = options.address;
  http.handlers["/metrics"] = [render] {
    return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", render()};
  };
  http.handlers["/healthz"] = [options, last_publish_ns] {
    const int64_t last = last_publish_ns->load();
    const absl::Duration since = options.env->Now() - absl::FromUnixNanos(last);
    if (last != 0 && since > options.stall_timeout) {
      return HttpResponse{503, "text/plain; charset=utf-8",
                          absl::StrCat("event loop stalled for ", absl::FormatDuration(since), "\n")};
    }
    return HttpResponse{200, "text/plain; charset=utf-8", "ok\n"};
  };
  http.handlers["/readyz"] = [ready, not_ready] {
    return ready->load() ? HttpResponse{200, "text/plain; charset=utf-8", "ready\n"}
                         : HttpResponse{503, "text/plain; charset=utf-8", not_ready + "\n"};
  };
  return HttpServer::Start(std::move(http));
}

absl::StatusOr<std::unique_ptr<CoordinatorMetrics>> CoordinatorMetrics::Start(
    const MetricsOptions& options) {
  auto state = std::make_unique<State>();
  state->options = options;
  prometheus::Registry& r = *state->registry;
  State& s = *state;
  s.registered = NewGauge(r, "fedge_agents_registered", "Agents that have registered this run.");
  s.live = NewGauge(r, "fedge_agents_live", "Agents heard from within the liveness timeout.");
  s.fleet_live = NewGauge(r, "fedge_fleet_agents_live",
                          "Live agents, counting those behind live relays instead of the relays.");
  s.relay_agents = &prometheus::BuildGauge()
                        .Name("fedge_relay_agents")
                        .Help("Agents behind each relay, as its last heartbeat said (0 once it is dead).")
                        .Register(r);
  s.relay_rejected = &prometheus::BuildCounter()
                          .Name("fedge_relay_updates_rejected_total")
                          .Help("Agent results the relays turned away, by reason, as their partials said.")
                          .Register(r);
  s.round = NewGauge(r, "fedge_round", "The round running now, or the last one finished (1-based).");
  s.rounds_completed = NewGauge(r, "fedge_rounds_completed", "Rounds aggregated and checkpointed.");
  s.rounds_planned = NewGauge(r, "fedge_rounds_planned", "Rounds in the run schedule.");
  s.in_round = NewGauge(r, "fedge_round_in_progress", "1 while a round waits for results.");
  auto& phase = prometheus::BuildGauge()
                    .Name("fedge_phase")
                    .Help("1 for the schedule phase of the current round, 0 for the others.")
                    .Register(r);
  for (Phase p : {Phase::kPretrain, Phase::kLearnPrecision, Phase::kFinetune}) {
    s.phase[p] = &phase.Add({{"phase", PhaseName(p)}});
  }
  s.last_round_seconds =
      NewGauge(r, "fedge_last_round_duration_seconds", "Wall time of the last finished round.");
  s.round_seconds = &prometheus::BuildHistogram()
                         .Name("fedge_round_duration_seconds")
                         .Help("Wall time of finished rounds.")
                         .Register(r)
                         .Add({}, prometheus::Histogram::BucketBoundaries{
                                      1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600});
  s.accepted = NewCounter(r, "fedge_updates_accepted_total", "Task results folded into an aggregate.");
  s.rejected = &prometheus::BuildCounter()
                    .Name("fedge_updates_rejected_total")
                    .Help("Messages and task results turned away, by reason.")
                    .Register(r);
  for (RejectReason reason : kAllRejectReasons) s.rejected->Add({{"reason", ReasonLabel(reason)}});
  s.dropped = &prometheus::BuildCounter()
                   .Name("fedge_replies_dropped_total")
                   .Help("Replies and tasks not sent, by reason: the peer's queue was full, the "
                         "peer was gone, it was past its allowance of refusals, or encoding failed.")
                   .Register(r);
  for (const char* reason : kDropReasons) s.dropped->Add({{"reason", reason}});
  s.tasks_resent = NewCounter(r, "fedge_tasks_resent_total",
                              "Tasks sent again because their agent registered anew.");
  s.round_retries = NewCounter(r, "fedge_round_retries_total",
                               "Rounds that ended with no accepted result and were run again.");
  s.checkpoint_failures =
      NewCounter(r, "fedge_checkpoint_failures_total",
                 "Checkpoints not written (full disk, I/O error): the last good one stayed.");
  s.messages_in = NewCounter(r, "fedge_messages_received_total", "Messages received from agents.");
  s.messages_out = NewCounter(r, "fedge_messages_sent_total", "Messages sent to agents.");
  s.bytes_in = NewCounter(r, "fedge_bytes_received_total", "Frame bytes received from agents.");
  s.bytes_out = NewCounter(r, "fedge_bytes_sent_total", "Frame bytes sent to agents.");
  s.uplink_update_bytes = NewCounter(r, "fedge_uplink_update_bytes_total",
                                     "Encoded update payload bytes in aggregated rounds.");
  s.model_bytes = NewGauge(r, "fedge_model_size_bytes",
                           "Weights and activations of the global model at their bit-widths.");
  s.model_parameters = NewGauge(r, "fedge_model_parameters", "Parameters of the global model.");
  s.weight_bits = NewGauge(r, "fedge_model_weight_bits", "Mean weight bit-width of the global model.");
  s.activation_bits =
      NewGauge(r, "fedge_model_activation_bits", "Mean activation bit-width of the global model.");
  s.accuracy = NewGauge(r, "fedge_model_test_accuracy",
                        "Held-out accuracy of the global model after the last round (0..1).");
  s.device_peak = NewGauge(r, "fedge_device_peak_memory_bytes",
                           "Largest peak training memory an agent reported in the last round.");
  s.device_rss = NewGauge(r, "fedge_device_peak_rss_bytes",
                          "Largest agent process peak RSS reported in the last round.");
  s.downlink_bytes = NewCounter(r, "fedge_downlink_model_bytes_total",
                                "Encoded model shard payload bytes sent in tasks.");
  s.up_since = NewGauge(r, "fedge_start_time_seconds", "Unix time the coordinator started.");
  s.up_since->Set(absl::ToDoubleSeconds(options.env->Now() - absl::UnixEpoch()));
  s.accuracy->Set(-1);

  std::unique_ptr<CoordinatorMetrics> metrics(new CoordinatorMetrics(std::move(state)));
  if (!options.address.empty()) {
    CoordinatorMetrics* self = metrics.get();
    ASSIGN_OR_RETURN(metrics->state_->server,
                     StartOperatorEndpoints(options, [self] { return self->Render(); },
                                            &self->state_->last_publish_ns, &self->state_->ready,
                                            "loading"));
  }
  return metrics;
}

CoordinatorMetrics::CoordinatorMetrics(std::unique_ptr<State> state) : state_(std::move(state)) {}

CoordinatorMetrics::~CoordinatorMetrics() {
  // Stop serving before the metrics go away.
  state_->server.reset();
}

void CoordinatorMetrics::SetReady(bool ready) { state_->ready = ready; }

void CoordinatorMetrics::Publish(const CoordinatorService& service, absl::Time now) {
  State& s = *state_;
  s.last_publish_ns = absl::ToUnixNanos(now);
  s.registered->Set(static_cast<double>(service.registry().agents().size()));
  s.live->Set(static_cast<double>(service.registry().live()));
  s.fleet_live->Set(static_cast<double>(service.registry().live_agents()));
  for (const std::string& id : service.registry().relays()) {
    const AgentRecord* record = service.registry().Find(id);
    Gauge*& gauge = s.relay_gauges[id];
    if (gauge == nullptr) gauge = &s.relay_agents->Add({{"relay", id}});
    gauge->Set(record != nullptr && record->relay && record->live ? record->relay_load.agents : 0);
  }
  const RoundEngine& engine = service.engine();
  const uint64_t completed = engine.completed_rounds();
  s.rounds_completed->Set(static_cast<double>(completed));
  s.rounds_planned->Set(engine.total_rounds());
  s.in_round->Set(engine.in_round() ? 1 : 0);
  // The round running now, or the last one finished; 0-based.
  const uint64_t current = engine.in_round() || completed == 0 ? completed : completed - 1;
  s.round->Set(static_cast<double>(current + 1));
  for (auto& [p, gauge] : s.phase) gauge->Set(p == engine.PhaseOf(current) ? 1 : 0);
  s.model_parameters->Set(static_cast<double>(service.model().parameter_count()));

  const ServiceCounters& c = service.counters();
  State::Advance(s.accepted, c.accepted_results, &s.published.accepted_results);
  State::Advance(s.messages_in, c.messages, &s.published.messages);
  State::Advance(s.messages_out, c.messages_out, &s.published.messages_out);
  State::Advance(s.bytes_in, c.bytes_in, &s.published.bytes_in);
  State::Advance(s.bytes_out, c.bytes_out, &s.published.bytes_out);
  for (const auto& [reason, total] : c.rejections) {
    State::Advance(&s.rejected->Add({{"reason", reason}}), total, &s.published.rejections[reason]);
  }
  for (const auto& [reason, total] : c.dropped_replies) {
    State::Advance(&s.dropped->Add({{"reason", reason}}), total,
                   &s.published.dropped_replies[reason]);
  }
  State::Advance(s.tasks_resent, c.tasks_resent, &s.published.tasks_resent);
  State::Advance(s.round_retries, c.round_retries, &s.published.round_retries);
  State::Advance(s.checkpoint_failures, c.checkpoint_failures, &s.published.checkpoint_failures);
}

void CoordinatorMetrics::OnRound(const RoundReport& report, const ModelStats& model) {
  State& s = *state_;
  s.last_round_seconds->Set(report.seconds);
  s.round_seconds->Observe(report.seconds);
  s.uplink_update_bytes->Increment(static_cast<double>(report.summary.uplink_bytes));
  s.device_peak->Set(static_cast<double>(report.summary.max_peak_memory));
  s.device_rss->Set(static_cast<double>(report.summary.max_process_rss));
  s.downlink_bytes->Increment(static_cast<double>(report.downlink_bytes));
  for (const auto& [reason, count] : report.summary.relay_rejections) {
    s.relay_rejected->Add({{"reason", reason}}).Increment(static_cast<double>(count));
  }
  s.model_bytes->Set(model.model_bytes);
  s.weight_bits->Set(model.weight_bits);
  s.activation_bits->Set(model.activation_bits);
  if (model.test_accuracy >= 0) s.accuracy->Set(model.test_accuracy);
}

std::string CoordinatorMetrics::Render() const {
  return prometheus::TextSerializer().Serialize(state_->registry->Collect());
}

int CoordinatorMetrics::port() const { return state_->server ? state_->server->port() : 0; }

}  // namespace fedge
