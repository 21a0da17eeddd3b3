#ifndef FEDGE_COORDINATOR_OPS_RELAY_METRICS_H_
#define FEDGE_COORDINATOR_OPS_RELAY_METRICS_H_

// A relay's operator endpoints over HTTP (common/http_server.h), beside the
// root's (metrics.h):
//   /metrics  Prometheus text: agents registered and live, whether the root
//             has welcomed it, the round in flight, partials sent, rounds
//             failed or dropped, agents reported and failed, results
//             refused by reason, messages and bytes to and from agents;
//   /healthz  200 while the event loop turns, 503 when it is stuck;
//   /readyz   200 once the root has welcomed the relay.
//
//   ASSIGN_OR_RETURN(auto metrics, RelayMetrics::Start({"0.0.0.0:9091"}));
//   loop: relay.Step(...); metrics->Publish(relay, absl::Now());
//
// Publish is called by the event loop's thread; the HTTP threads only read.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/ops/metrics.h"
#include "coordinator/relay.h"

namespace fedge {

class RelayMetrics {
 public:
  static absl::StatusOr<std::unique_ptr<RelayMetrics>> Start(const MetricsOptions& options);
  ~RelayMetrics();

  void Publish(const RelayService& relay, absl::Time now);
  std::string Render() const;
  int port() const;

 private:
  struct State;
  explicit RelayMetrics(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_OPS_RELAY_METRICS_H_
