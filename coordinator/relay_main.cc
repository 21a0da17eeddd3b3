// A relay aggregator (coordinator/relay.h): agents connect to it with the
// unchanged agent protocol; it registers with the root under its own key
// (enrolled on the root's allowlist as a relay), fans each round's task out
// to its agents and sends one partial up. Stateless beyond the round in
// flight: run as many as the fleet needs, each with its own key.
//
//   relay --id=relay-1 --root=tcp://root:7070 --root_key=/etc/fedge/coordinator.pub
//       --key=/var/lib/fedge/keys/relay-1 --listen=tcp://*:7071
//       --allowlist=/etc/fedge/agents.allowlist --metrics_address=0.0.0.0:9091
//   relay --flagfile=/etc/fedge/relay.flags

#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/io/file_util.h"
#include "common/io/flags_help.h"
#include "common/status/status_macros.h"
#include "common/transport/zmq_transport.h"
#include "coordinator/ops/relay_metrics.h"
#include "coordinator/relay.h"

ABSL_FLAG(std::string, id, "", "this relay's id, as enrolled (as a relay) on the root's allowlist");
ABSL_FLAG(std::string, root, "tcp://127.0.0.1:7070", "the root coordinator's endpoint");
ABSL_FLAG(std::string, root_key, "", "the root's public key file");
ABSL_FLAG(std::string, key, "",
          "path prefix of this relay's CURVE key pair (.key/.pub): its identity to the root "
          "and the server key its agents connect with");
ABSL_FLAG(std::string, listen, "tcp://127.0.0.1:7071", "ZeroMQ endpoint to bind for agents");
ABSL_FLAG(std::string, allowlist, "", "file of the agents' 'device_id public_key' lines");
ABSL_FLAG(bool, plaintext, false, "run without CURVE, both ways (loopback development only)");
ABSL_FLAG(int, heartbeat_ms, 1000, "agents' heartbeat interval");
ABSL_FLAG(int, agent_timeout_s, 30, "silence after which an agent counts as dead");
ABSL_FLAG(int, root_timeout_s, 90, "no message from the root for this long: register again");
ABSL_FLAG(double, deadline_fraction, 0.8,
          "the agents' deadline as a fraction of the root's, so the partial arrives in time");
ABSL_FLAG(int, link_timeout_s, 60,
          "drop an agent connection that delivers no whole frame for this long (0: TCP keepalive)");
ABSL_FLAG(int, send_queue, 1000, "messages queued per agent before replies to it are dropped");
ABSL_FLAG(std::string, metrics_address, "",
          "host:port for /metrics (Prometheus), /healthz and /readyz; empty: off");
ABSL_FLAG(bool, check_config, false, "validate the flags, keys and allowlist, and exit");

namespace fedge {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

absl::Status Serve() {
  const std::string id = absl::GetFlag(FLAGS_id);
  if (id.empty()) return absl::InvalidArgumentError("--id is required");
  const double fraction = absl::GetFlag(FLAGS_deadline_fraction);
  if (!(fraction > 0.1 && fraction < 1)) {
    return absl::InvalidArgumentError("--deadline_fraction must be in (0.1, 1)");
  }
  if (absl::GetFlag(FLAGS_heartbeat_ms) < 10 || absl::GetFlag(FLAGS_agent_timeout_s) < 1 ||
      absl::GetFlag(FLAGS_root_timeout_s) < 2 || absl::GetFlag(FLAGS_link_timeout_s) < 0 ||
      absl::GetFlag(FLAGS_send_queue) < 1) {
    return absl::InvalidArgumentError(
        "--heartbeat_ms >= 10, --agent_timeout_s >= 1, --root_timeout_s >= 2, "
        "--link_timeout_s >= 0 and --send_queue >= 1 are required");
  }
  const bool plaintext = absl::GetFlag(FLAGS_plaintext);
  ZmqServerOptions down;
  down.endpoint = absl::GetFlag(FLAGS_listen);
  down.link_timeout = absl::Seconds(absl::GetFlag(FLAGS_link_timeout_s));
  down.send_queue_messages = absl::GetFlag(FLAGS_send_queue);
  ZmqClientOptions up;
  up.endpoint = absl::GetFlag(FLAGS_root);
  up.identity = id;
  up.linger = absl::Milliseconds(500);
  if (!plaintext) {
    if (absl::GetFlag(FLAGS_key).empty() || absl::GetFlag(FLAGS_root_key).empty() ||
        absl::GetFlag(FLAGS_allowlist).empty()) {
      return absl::InvalidArgumentError(
          "CURVE needs --key, --root_key and --allowlist (or --plaintext for loopback "
          "development)");
    }
    ASSIGN_OR_RETURN(const CurveKeyPair keys, ReadKeyPair(absl::GetFlag(FLAGS_key)));
    ASSIGN_OR_RETURN(const std::string allow,
                     ReadFileToString(absl::GetFlag(FLAGS_allowlist), 1 << 24));
    ASSIGN_OR_RETURN(Allowlist allowlist, ParseAllowlistWithRoles(allow));
    if (!allowlist.relays.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--allowlist: a relay's allowlist enrols agents; '", *allowlist.relays.begin(),
          "' is enrolled as a relay"));
    }
    down.curve = CurveServerConfig{keys, std::move(allowlist.keys)};
    CurveClientConfig curve;
    curve.keys = keys;
    ASSIGN_OR_RETURN(curve.server_public_key, ReadPublicKey(absl::GetFlag(FLAGS_root_key)));
    up.curve = curve;
  }
  if (absl::GetFlag(FLAGS_check_config)) {
    std::printf("configuration OK: relay %s, agents on %s, root %s (%s)\n", id.c_str(),
                down.endpoint.c_str(), up.endpoint.c_str(), plaintext ? "PLAINTEXT" : "CURVE");
    return absl::OkStatus();
  }
  std::unique_ptr<RelayMetrics> metrics;
  ASSIGN_OR_RETURN(metrics, RelayMetrics::Start({absl::GetFlag(FLAGS_metrics_address)}));
  ASSIGN_OR_RETURN(std::unique_ptr<ZmqServerTransport> downstream, ZmqServerTransport::Create(down));
  ASSIGN_OR_RETURN(std::unique_ptr<ZmqClientTransport> upstream, ZmqClientTransport::Create(up));
  std::fprintf(stderr, "[relay %s] agents on %s (%s), root %s%s\n", id.c_str(),
               downstream->bound_endpoint().c_str(), plaintext ? "PLAINTEXT" : "CURVE",
               up.endpoint.c_str(),
               absl::GetFlag(FLAGS_metrics_address).empty()
                   ? ""
                   : absl::StrCat(", metrics on port ", metrics->port()).c_str());

  RelayOptions options;
  options.upstream.device_id = id;
  // Until agents register the relay reports no memory limit of its own.
  options.upstream.registration = Register{uint64_t{1} << 40, 1, 0, "fedge relay 0.1"};
  options.upstream.coordinator_timeout = absl::Seconds(absl::GetFlag(FLAGS_root_timeout_s));
  options.liveness.heartbeat_interval = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_ms));
  options.liveness.timeout = absl::Seconds(absl::GetFlag(FLAGS_agent_timeout_s));
  options.deadline_fraction = fraction;
  RelayService relay(options, upstream.get(), downstream.get());
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  absl::Time published = absl::InfinitePast();
  while (!g_stop) {
    RETURN_IF_ERROR(relay.Step(absl::Now(), absl::Milliseconds(20)));
    const absl::Time now = absl::Now();
    if (now - published >= absl::Milliseconds(200)) {
      metrics->Publish(relay, now);
      published = now;
    }
  }
  std::fprintf(stderr, "[relay %s] stopped by signal\n", id.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  fedge::SetUpHelp("coordinator/relay_main.cc",
                   "a relay aggregator between agents and the root coordinator.\n\n"
                   "  relay --id=relay-1 --root=tcp://ROOT:7070 --root_key=coordinator.pub "
                   "--key=KEYS/relay-1 --listen=tcp://*:7071 --allowlist=AGENTS\n"
                   "  relay --flagfile=/etc/fedge/relay.flags");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = fedge::Serve();
  if (!status.ok()) {
    std::fprintf(stderr, "relay: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
