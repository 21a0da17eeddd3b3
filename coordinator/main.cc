// The coordinator service: registers agents, runs the phase schedule round by
// round, aggregates updates into the global model, checkpoints after every
// aggregation, evaluates on a held-out set, writes per-round metrics (JSON
// lines) and, at the end, a table and a plot.
//
//   coordinator --listen=tcp://*:7070 --key=/var/lib/fedge/keys/coordinator
//       --allowlist=/etc/fedge/allowlist --state_dir=/var/lib/fedge
//   coordinator --flagfile=/etc/fedge/coordinator.flags

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/io/file_util.h"
#include "common/io/flags_help.h"
#include "common/status/status_macros.h"
#include "common/transport/zmq_transport.h"
#include "coordinator/checkpoint.h"
#include "coordinator/config.h"
#include "coordinator/evaluator.h"
#include "coordinator/ops/metrics.h"
#include "coordinator/run_report.h"
#include "coordinator/service.h"
#include "models/data/dataset.h"

ABSL_FLAG(std::string, listen, "tcp://127.0.0.1:7070", "ZeroMQ endpoint to bind");
ABSL_FLAG(std::string, key, "", "path prefix of the coordinator's CURVE key pair (.key/.pub)");
ABSL_FLAG(std::string, allowlist, "",
          "file of 'device_id public_key' lines; 'device_id public_key relay' enrols a relay");
ABSL_FLAG(bool, plaintext, false, "run without CURVE (loopback development only)");
ABSL_FLAG(std::string, state_dir, "coordinator_state", "checkpoints and metrics");
ABSL_FLAG(std::string, arch, "fmnist-cnn",
          "model: fmnist-cnn, fmnist-mlp (mixed precision, learned bit-widths), mlp, cnv, "
          "binarynet (binary, memory-saving backprop on the agents)");
ABSL_FLAG(std::string, input_shape, "",
          "binary networks: input CxHxW (default 1x28x28 for mlp, 1x32x32 for cnv and binarynet)");
ABSL_FLAG(std::string, schedule, "pretrain:2,learn:3,finetune:2", "phase:rounds,...");
ABSL_FLAG(double, fraction, 1.0, "fraction of live agents sampled per round");
ABSL_FLAG(int, min_agents, 2, "agents needed to start a round");
ABSL_FLAG(double, quorum, 1.0, "fraction of sampled tasks to wait for");
ABSL_FLAG(int, deadline_s, 300, "seconds an agent has for a task");
ABSL_FLAG(bool, async, false, "fold late results into the next round (staleness-weighted)");
ABSL_FLAG(int, local_steps, 60, "training steps per task");
ABSL_FLAG(int, batch, 64, "batch size");
ABSL_FLAG(double, lr, 1e-3, "learning rate");
ABSL_FLAG(std::string, lr_schedule, "constant",
          "constant, or cosine: each round's learning rate decays from --lr toward 0 over the run");
ABSL_FLAG(int, quantizer_every, 1, "learn precision: quantizer update interval in steps");
ABSL_FLAG(std::string, penalty, "relative",
          "size penalty's excess over a budget: relative (W/W* - 1, any model scale) or "
          "absolute (kB, the seed's form)");
ABSL_FLAG(std::string, size_accounting, "reference",
          "reference (the input image not counted, the classifier's bias counted with the "
          "weights) or project (every layer's input counted)");
ABSL_FLAG(double, budget_bits, 2.0, "average bits of the weight and activation budgets");
ABSL_FLAG(double, activation_budget_bits, 0,
          "average bits of the activation budget alone (0: --budget_bits)");
ABSL_FLAG(int, pretrain_bits, 8, "precision of the pretrain phase");
ABSL_FLAG(std::string, uplink, "sign-ef", "update codec: fp32, fp16, q2..q8, sign-ef");
ABSL_FLAG(std::string, downlink, "mixed",
          "weight shards: mixed (layers an agent runs frozen as codes at their learned "
          "bit-widths, or signs for a binary network; the trainable ones fp16), mixed-q8 (the "
          "trainable ones as 8-bit codes, one scale per output channel), fp16 or fp32");
ABSL_FLAG(std::string, rule, "fedavg", "aggregation: fedavg, median, trimmed");
ABSL_FLAG(double, max_update_norm, 0, "reject shard updates above this L2 norm (0: off)");
ABSL_FLAG(double, max_update_scale, 100,
          "reject updates with a value above this many times the shard's largest |value| "
          "(at least 1): one agent cannot swamp an aggregate or overflow it");
ABSL_FLAG(int, link_timeout_s, 60,
          "drop a connection that delivers no whole frame for this long; must exceed the "
          "time the slowest link takes for a 64 KiB frame (0: TCP keepalive instead, for "
          "fleets of thousands of agents)");
ABSL_FLAG(int, send_queue, 1000, "messages queued per agent before replies to it are dropped");
ABSL_FLAG(std::string, server_optimizer, "fedavg",
          "fedavg, fedavgm (server momentum) or fedadam");
ABSL_FLAG(double, server_lr, 0,
          "server learning rate (0: the optimizer's default, 1 for fedavg and fedavgm, 0.01 for "
          "fedadam)");
ABSL_FLAG(double, server_momentum, 0.9, "fedavgm's server momentum, in [0, 1)");
ABSL_FLAG(int, heartbeat_ms, 1000, "agents' heartbeat interval");
ABSL_FLAG(int, agent_timeout_s, 30, "silence after which an agent counts as dead");
ABSL_FLAG(int64_t, eval_samples, 10000, "held-out Fashion-MNIST test samples (0: none)");
ABSL_FLAG(std::string, data_dir, fedge::kFashionMnistDir, "Fashion-MNIST IDX files");
ABSL_FLAG(int, threads, 1, "intra-op threads for evaluation");
ABSL_FLAG(std::string, metrics_address, "",
          "host:port for /metrics (Prometheus), /healthz and /readyz; empty: off");
ABSL_FLAG(bool, exit_when_done, true,
          "exit after the last round; false keeps serving agents and metrics until stopped");
ABSL_FLAG(bool, check_config, false,
          "validate the flags, keys, allowlist and checkpoint, print the plan and exit");

namespace fedge {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

CoordinatorFlags ReadFlags() {
  CoordinatorFlags f;
  f.listen = absl::GetFlag(FLAGS_listen);
  f.key = absl::GetFlag(FLAGS_key);
  f.allowlist = absl::GetFlag(FLAGS_allowlist);
  f.plaintext = absl::GetFlag(FLAGS_plaintext);
  f.state_dir = absl::GetFlag(FLAGS_state_dir);
  f.arch = absl::GetFlag(FLAGS_arch);
  f.input_shape = absl::GetFlag(FLAGS_input_shape);
  f.schedule = absl::GetFlag(FLAGS_schedule);
  f.fraction = absl::GetFlag(FLAGS_fraction);
  f.min_agents = absl::GetFlag(FLAGS_min_agents);
  f.quorum = absl::GetFlag(FLAGS_quorum);
  f.deadline_s = absl::GetFlag(FLAGS_deadline_s);
  f.async = absl::GetFlag(FLAGS_async);
  f.local_steps = absl::GetFlag(FLAGS_local_steps);
  f.batch = absl::GetFlag(FLAGS_batch);
  f.lr = absl::GetFlag(FLAGS_lr);
  f.lr_schedule = absl::GetFlag(FLAGS_lr_schedule);
  f.quantizer_every = absl::GetFlag(FLAGS_quantizer_every);
  f.budget_bits = absl::GetFlag(FLAGS_budget_bits);
  f.activation_budget_bits = absl::GetFlag(FLAGS_activation_budget_bits);
  f.penalty = absl::GetFlag(FLAGS_penalty);
  f.size_accounting = absl::GetFlag(FLAGS_size_accounting);
  f.pretrain_bits = absl::GetFlag(FLAGS_pretrain_bits);
  f.uplink = absl::GetFlag(FLAGS_uplink);
  f.downlink = absl::GetFlag(FLAGS_downlink);
  f.rule = absl::GetFlag(FLAGS_rule);
  f.max_update_norm = absl::GetFlag(FLAGS_max_update_norm);
  f.max_update_scale = absl::GetFlag(FLAGS_max_update_scale);
  f.link_timeout_s = absl::GetFlag(FLAGS_link_timeout_s);
  f.send_queue = absl::GetFlag(FLAGS_send_queue);
  f.server_optimizer = absl::GetFlag(FLAGS_server_optimizer);
  f.server_lr = absl::GetFlag(FLAGS_server_lr);
  f.server_momentum = absl::GetFlag(FLAGS_server_momentum);
  f.heartbeat_ms = absl::GetFlag(FLAGS_heartbeat_ms);
  f.agent_timeout_s = absl::GetFlag(FLAGS_agent_timeout_s);
  f.eval_samples = absl::GetFlag(FLAGS_eval_samples);
  f.threads = absl::GetFlag(FLAGS_threads);
  f.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  return f;
}

// With CURVE, `relay_ids` gets the ids the allowlist enrols as relays.
absl::StatusOr<ZmqServerOptions> ServerOptions(const CoordinatorConfig& config,
                                               std::optional<std::set<std::string>>* relay_ids) {
  ZmqServerOptions server;
  server.endpoint = config.listen;
  server.link_timeout = config.link_timeout;
  server.send_queue_messages = config.send_queue;
  if (!config.plaintext) {
    CurveServerConfig curve;
    ASSIGN_OR_RETURN(curve.keys, ReadKeyPair(config.key_path));
    ASSIGN_OR_RETURN(const std::string allow, ReadFileToString(config.allowlist_path, 1 << 24));
    ASSIGN_OR_RETURN(Allowlist allowlist, ParseAllowlistWithRoles(allow));
    curve.allowlist = std::move(allowlist.keys);
    *relay_ids = std::move(allowlist.relays);
    server.curve = curve;
  }
  return server;
}

absl::Status Serve() {
  ASSIGN_OR_RETURN(const CoordinatorConfig config, ParseCoordinatorConfig(ReadFlags()));
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  const bool check_only = absl::GetFlag(FLAGS_check_config);
  SetComputeThreads(config.threads);
  RETURN_IF_ERROR(Annotate(CreateDirectories(config.state_dir), "--state_dir"));
  std::unique_ptr<CoordinatorMetrics> metrics;
  if (!check_only) {
    ASSIGN_OR_RETURN(metrics, CoordinatorMetrics::Start({config.metrics_address}));
    if (!config.metrics_address.empty()) {
      std::fprintf(stderr, "[coordinator] metrics on http://%s/metrics (port %d)\n",
                   config.metrics_address.c_str(), metrics->port());
    }
  }

  // The model: resumed from the checkpoint, or a fresh one calibrated at the
  // pretrain precision.
  ASSIGN_OR_RETURN(std::unique_ptr<ModelEvaluator> evaluator,
                   ModelEvaluator::Create(config.model, data_dir, config.eval_samples));
  RunReport report(config.state_dir, config.total_rounds, absl::Now());
  ModelState model;
  uint64_t resumed_rounds = 0;
  const std::string& checkpoint_path = config.service.checkpoint_path;
  absl::StatusOr<Checkpoint> checkpoint = ReadCheckpoint(checkpoint_path);
  if (checkpoint.ok()) {
    model = checkpoint->model;
    resumed_rounds = checkpoint->completed_rounds;
    RETURN_IF_ERROR(evaluator->Check(model));
    std::fprintf(stderr, "[coordinator] resumed from %s: %llu rounds done, model v%llu\n",
                 checkpoint_path.c_str(), static_cast<unsigned long long>(resumed_rounds),
                 static_cast<unsigned long long>(model.version));
  } else if (checkpoint.status().code() == absl::StatusCode::kNotFound) {
    ASSIGN_OR_RETURN(model, InitialModel(config.model, data_dir, config.pretrain_bits));
    if (!check_only) report.Reset();
  } else {
    return Annotate(checkpoint.status(), "refusing to start over a damaged checkpoint");
  }

  std::optional<std::set<std::string>> relay_ids;
  ASSIGN_OR_RETURN(const ZmqServerOptions server, ServerOptions(config, &relay_ids));
  if (check_only) {
    std::printf("configuration OK: %s, %d rounds (%s), %s uplink, %s aggregation, %s, state in %s (%s)\n",
                config.model.Describe().c_str(), config.total_rounds, absl::GetFlag(FLAGS_schedule).c_str(),
                absl::GetFlag(FLAGS_uplink).c_str(), absl::GetFlag(FLAGS_rule).c_str(),
                server.curve ? "CURVE" : "PLAINTEXT", config.state_dir.c_str(),
                resumed_rounds > 0 ? absl::StrCat("resumes after round ", resumed_rounds).c_str()
                                   : "fresh start");
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ZmqServerTransport> transport, ZmqServerTransport::Create(server));
  std::fprintf(stderr, "[coordinator] listening on %s (%s), %d rounds, %s (%lld values)\n",
               transport->bound_endpoint().c_str(), server.curve ? "CURVE" : "PLAINTEXT",
               config.total_rounds, config.model.Describe().c_str(),
               static_cast<long long>(model.parameter_count()));

  auto on_round = [&](const RoundReport& round, const ModelState& updated) {
    const ModelStats stats = evaluator->Evaluate(updated);
    RoundRow row;
    row.round = round.summary.round;
    row.phase = round.summary.phase;
    row.accuracy = std::max(0.0, stats.test_accuracy);
    row.weight_bits = stats.weight_bits;
    row.act_bits = stats.activation_bits;
    row.model_kb = stats.model_bytes / 1000;
    row.uplink_bytes = round.summary.uplink_bytes;
    row.fp32_bytes = round.fp32_uplink_bytes;
    row.peak_memory = round.summary.max_peak_memory;
    row.process_rss = round.summary.max_process_rss;
    row.downlink_bytes = round.downlink_bytes;
    row.fp32_downlink_bytes = round.fp32_downlink_bytes;
    row.reported = round.summary.reported;
    row.rejected = static_cast<int>(round.summary.aggregation.rejected);
    row.seconds = round.seconds;
    metrics->OnRound(round, stats);
    report.Add(row, absl::Now());
  };
  ServiceOptions service_options = config.service;
  service_options.relay_ids = relay_ids;
  if (config.mixed_downlink) {
    service_options.frozen_codings = [&evaluator](const ModelState& m) {
      return evaluator->FrozenCodings(m);
    };
  }
  service_options.project_to_budget = [&evaluator](const Hyper& hyper, ModelState* m) {
    return evaluator->ProjectToBudget(hyper, m);
  };
  CoordinatorService service(service_options, model, resumed_rounds, transport.get(), on_round);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  metrics->SetReady(true);
  absl::Time published = absl::InfinitePast();
  const bool exit_when_done = absl::GetFlag(FLAGS_exit_when_done);
  bool reported = service.done();
  if (reported) {
    std::fprintf(stderr, "[coordinator] the schedule's %d rounds are all done\n", config.total_rounds);
  }
  while (!g_stop && !(exit_when_done && service.done())) {
    RETURN_IF_ERROR(service.Step(absl::Now(), absl::Milliseconds(50)));
    const absl::Time now = absl::Now();
    if (now - published >= absl::Milliseconds(200)) {
      metrics->Publish(service, now);
      published = now;
    }
    if (service.done() && !reported) {
      reported = true;
      RETURN_IF_ERROR(report.Finish());
      if (!exit_when_done) {
        std::fprintf(stderr, "[coordinator] run complete; serving agents and metrics until stopped\n");
      }
    }
  }
  metrics->Publish(service, absl::Now());
  if (!reported) RETURN_IF_ERROR(report.Finish());
  if (g_stop) {
    std::fprintf(stderr, "[coordinator] stopped by signal; state is in %s\n", config.state_dir.c_str());
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  fedge::SetUpHelp("coordinator/main.cc",
                   "the federated training coordinator.\n\n"
                   "  coordinator --listen=tcp://*:7070 --key=KEYS/coordinator "
                   "--allowlist=ALLOWLIST --state_dir=DIR\n"
                   "  coordinator --flagfile=/etc/fedge/coordinator.flags");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = fedge::Serve();
  if (!status.ok()) {
    std::fprintf(stderr, "coordinator: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
