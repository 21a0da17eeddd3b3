// Prints a running coordinator's state as a table, read from its metrics
// endpoint (the same series Prometheus scrapes), with its health and
// readiness. Exits 1 when the coordinator cannot be reached or is unhealthy.
//
//   status --coordinator=http://127.0.0.1:9464

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/io/flags_help.h"
#include "coordinator/ops/http_client.h"
#include "coordinator/ops/prometheus_text.h"
#include "common/status/status_macros.h"

ABSL_FLAG(std::string, coordinator, "http://127.0.0.1:9464",
          "the coordinator's --metrics_address, as a URL");
ABSL_FLAG(int, timeout_s, 5, "seconds to wait for each answer");

namespace fedge {
namespace {

std::string Bytes(double b) {
  if (b >= 1e9) return absl::StrFormat("%.2f GB", b / 1e9);
  if (b >= 1e6) return absl::StrFormat("%.2f MB", b / 1e6);
  if (b >= 1e3) return absl::StrFormat("%.1f kB", b / 1e3);
  return absl::StrFormat("%.0f B", b);
}

absl::Status PrintStatus() {
  std::string base = absl::GetFlag(FLAGS_coordinator);
  while (absl::EndsWith(base, "/")) base.pop_back();
  if (absl::EndsWith(base, "/metrics")) base.resize(base.size() - 8);
  if (!absl::StartsWith(base, "http://") && !absl::StartsWith(base, "https://")) {
    base = "http://" + base;
  }
  const int timeout_s = absl::GetFlag(FLAGS_timeout_s);
  if (timeout_s < 1 || timeout_s > 600) return absl::InvalidArgumentError("--timeout_s must be in 1..600");
  const absl::Duration timeout = absl::Seconds(timeout_s);
  ASSIGN_OR_RETURN(const HttpResponse metrics, HttpGet(base + "/metrics", timeout));
  if (metrics.status != 200) {
    return absl::UnavailableError(absl::StrCat(base, "/metrics answered HTTP ", metrics.status));
  }
  ASSIGN_OR_RETURN(const std::vector<PromSample> samples, ParsePrometheusText(metrics.body));
  if (!FindSample(samples, "fedge_round").has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(base, "/metrics has no fedge_round series: is this a fedge coordinator?"));
  }
  absl::StatusOr<HttpResponse> health = HttpGet(base + "/healthz", timeout);
  absl::StatusOr<HttpResponse> ready = HttpGet(base + "/readyz", timeout);
  const bool healthy = health.ok() && health->status == 200;
  const bool is_ready = ready.ok() && ready->status == 200;

  auto get = [&](const std::string& name, std::map<std::string, std::string> labels = {}) {
    return FindSample(samples, name, labels).value_or(0.0);
  };
  std::string phase = "?";
  for (const PromSample& s : samples) {
    if (s.name == "fedge_phase" && s.value == 1) phase = s.labels.count("phase") ? s.labels.at("phase") : "?";
  }
  std::string reasons;
  double rejected = 0;
  for (const PromSample& s : samples) {
    if (s.name != "fedge_updates_rejected_total" || s.value == 0) continue;
    rejected += s.value;
    absl::StrAppend(&reasons, reasons.empty() ? "" : ", ", s.labels.count("reason") ? s.labels.at("reason") : "?",
                    " ", s.value);
  }
  std::string dropped;
  for (const PromSample& s : samples) {
    if (s.name != "fedge_replies_dropped_total" || s.value == 0) continue;
    absl::StrAppend(&dropped, dropped.empty() ? "" : ", ",
                    s.labels.count("reason") ? s.labels.at("reason") : "?", " ", s.value);
  }
  const double accuracy = get("fedge_model_test_accuracy");
  const double rounds_completed = get("fedge_rounds_completed");
  const double planned = get("fedge_rounds_planned");

  std::vector<std::pair<std::string, std::string>> rows = {
      {"coordinator", absl::StrCat(base, "  ", healthy ? "healthy" : "UNHEALTHY", ", ",
                                   is_ready ? "ready" : "not ready")},
      {"round", absl::StrFormat("%.0f of %.0f (%s%s); %.0f completed", get("fedge_round"), planned,
                                phase, get("fedge_round_in_progress") == 1 ? ", in progress" : "",
                                rounds_completed)},
      {"agents", absl::StrFormat("%.0f registered, %.0f live", get("fedge_agents_registered"),
                                 get("fedge_agents_live"))},
      {"updates", absl::StrFormat("%.0f accepted, %.0f rejected%s", get("fedge_updates_accepted_total"),
                                  rejected, reasons.empty() ? "" : absl::StrCat(" (", reasons, ")"))},
      {"messages", absl::StrFormat("%.0f in, %.0f out%s", get("fedge_messages_received_total"),
                                   get("fedge_messages_sent_total"),
                                   dropped.empty() ? "" : absl::StrCat("; dropped: ", dropped))},
      {"retries", absl::StrFormat("%.0f rounds run again (no accepted result), %.0f tasks sent again",
                                  get("fedge_round_retries_total"), get("fedge_tasks_resent_total"))},
      {"bytes", absl::StrCat(Bytes(get("fedge_bytes_received_total")), " in, ",
                             Bytes(get("fedge_bytes_sent_total")), " out")},
      {"last round", rounds_completed > 0
                         ? absl::StrFormat("%.1f s", get("fedge_last_round_duration_seconds"))
                         : "-"},
      {"model", get("fedge_model_size_bytes") > 0
                    ? absl::StrFormat("%.0f parameters, %s at %.2f weight / %.2f activation bits",
                                      get("fedge_model_parameters"),
                                      Bytes(get("fedge_model_size_bytes")),
                                      get("fedge_model_weight_bits"),
                                      get("fedge_model_activation_bits"))
                    : absl::StrFormat("%.0f parameters; size and bit-widths after the first "
                                      "round this coordinator finishes",
                                      get("fedge_model_parameters"))},
      {"test accuracy", accuracy >= 0 ? absl::StrFormat("%.2f%%", 100 * accuracy) : "not evaluated yet"},
      {"device peak", absl::StrCat(Bytes(get("fedge_device_peak_memory_bytes")), " training, ",
                                   Bytes(get("fedge_device_peak_rss_bytes")), " process RSS")},
  };
  for (const auto& [key, value] : rows) std::printf("%-14s %s\n", key.c_str(), value.c_str());
  if (!healthy) {
    return absl::UnavailableError(absl::StrCat(
        "unhealthy: ", health.ok() ? absl::StrCat("HTTP ", health->status, " ", health->body)
                                   : std::string(health.status().message())));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  fedge::SetUpHelp("coordinator/ops/status.cc",
                   "the coordinator's state from its metrics endpoint.\n\n"
                   "  status --coordinator=http://127.0.0.1:9090");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = fedge::PrintStatus();
  if (!status.ok()) {
    std::fprintf(stderr, "status: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
