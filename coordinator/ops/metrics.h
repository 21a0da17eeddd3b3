#ifndef FEDGE_COORDINATOR_METRICS_H_
#define FEDGE_COORDINATOR_METRICS_H_

// The coordinator's operator endpoints over HTTP (common/http_server.h):
//   /metrics  Prometheus text format: agents registered and live, round,
//             phase, round duration, updates accepted and rejected by
//             reason, messages and bytes in and out, model size, bits and
//             accuracy;
//   /healthz  200 while the event loop is turning (it publishes at least
//             every `stall_timeout`), 503 when it is stuck;
//   /readyz   200 once the model is loaded and the ZeroMQ socket is bound.
//
//   ASSIGN_OR_RETURN(auto metrics, CoordinatorMetrics::Start({"0.0.0.0:9090"}));
//   metrics->SetReady(true);
//   loop: service.Step(...); metrics->Publish(service, absl::Now());
//   on_round: metrics->OnRound(report, model_stats);
//
// Publish and OnRound are called by the event loop's thread; the HTTP
// threads only read (the metric types are atomic).

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/env/env.h"
#include "coordinator/service.h"

namespace fedge {

struct MetricsOptions {
  std::string address;  // "host:port"; empty: no HTTP server (Render still works)
  absl::Duration stall_timeout = absl::Seconds(60);
  // The clock (/healthz compares it with the last Publish); must be
  // thread-safe: the HTTP threads read it.
  Env* env = Env::Default();
};

struct ModelStats {
  double test_accuracy = -1;  // < 0: not evaluated
  double model_bytes = 0;     // weights and activations at their bit-widths
  double weight_bits = 0;
  double activation_bits = 0;
};

class HttpServer;

// The operator endpoints the coordinator and the relays both serve at
// `options.address`: /metrics (what `render` returns), /healthz (503 once
// the last publish, in `last_publish_ns`, is older than the stall timeout)
// and /readyz (200 while `ready`, else 503 saying `not_ready`). The atomics
// must outlive the server.
absl::StatusOr<std::unique_ptr<HttpServer>> StartOperatorEndpoints(
    const MetricsOptions& options, std::function<std::string()> render,
    const std::atomic<int64_t>* last_publish_ns, const std::atomic<bool>* ready,
    std::string not_ready);

class CoordinatorMetrics {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorMetrics>> Start(const MetricsOptions& options);
  ~CoordinatorMetrics();

  void SetReady(bool ready);
  void Publish(const CoordinatorService& service, absl::Time now);
  void OnRound(const RoundReport& report, const ModelStats& model);

  // The /metrics body.
  std::string Render() const;
  // The HTTP port (0 without a server).
  int port() const;

 private:
  struct State;
  explicit CoordinatorMetrics(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_METRICS_H_
