// The coordinator service: registers agents, runs the phase schedule round by
// round, aggregates updates into the global model, checkpoints after every
// aggregation, evaluates on a held-out set, writes per-round metrics (JSON
// lines) and, at the end, a table and a plot.
//
//   coordinator --listen=tcp://*:7070 --key=/var/lib/fedge/keys/coordinator
//       --allowlist=/etc/fedge/allowlist --state_dir=/var/lib/fedge
//   coordinator --flagfile=/etc/fedge/coordinator.flags

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/flags_help.h"
#include "common/http_server.h"
#include "common/status_macros.h"
#include "common/svg_plot.h"
#include "common/update_codec.h"
#include "common/wire_codec.h"
#include "common/zmq_transport.h"
#include "coordinator/checkpoint.h"
#include "coordinator/metrics.h"
#include "coordinator/registry.h"
#include "coordinator/round_engine.h"
#include "coordinator/service.h"
#include "coordinator/shard_planner.h"
#include "models/dataset.h"
#include "models/model_shards.h"
#include "models/phase_trainer.h"
#include "models/quant_net.h"

ABSL_FLAG(std::string, listen, "tcp://127.0.0.1:7070", "ZeroMQ endpoint to bind");
ABSL_FLAG(std::string, key, "", "path prefix of the coordinator's CURVE key pair (.key/.pub)");
ABSL_FLAG(std::string, allowlist, "", "file of 'device_id public_key' lines");
ABSL_FLAG(bool, plaintext, false, "run without CURVE (loopback development only)");
ABSL_FLAG(std::string, state_dir, "coordinator_state", "checkpoints and metrics");
ABSL_FLAG(std::string, arch, "fmnist-cnn", "model architecture (fmnist-cnn, fmnist-mlp)");
ABSL_FLAG(std::string, schedule, "pretrain:2,learn:3,finetune:2", "phase:rounds,...");
ABSL_FLAG(double, fraction, 1.0, "fraction of live agents sampled per round");
ABSL_FLAG(int, min_agents, 2, "agents needed to start a round");
ABSL_FLAG(double, quorum, 1.0, "fraction of sampled tasks to wait for");
ABSL_FLAG(int, deadline_s, 300, "seconds an agent has for a task");
ABSL_FLAG(bool, async, false, "fold late results into the next round (staleness-weighted)");
ABSL_FLAG(int, local_steps, 60, "training steps per task");
ABSL_FLAG(int, batch, 64, "batch size");
ABSL_FLAG(double, lr, 1e-3, "learning rate");
ABSL_FLAG(int, quantizer_every, 20, "learn precision: quantizer update interval");
ABSL_FLAG(double, budget_bits, 2.0, "average bits of the weight and activation budgets");
ABSL_FLAG(int, pretrain_bits, 8, "precision of the pretrain phase");
ABSL_FLAG(std::string, uplink, "sign-ef", "update codec: fp32, fp16, q2..q8, sign-ef");
ABSL_FLAG(std::string, downlink, "fp16", "weight shard codec: fp32 or fp16");
ABSL_FLAG(std::string, rule, "fedavg", "aggregation: fedavg, median, trimmed");
ABSL_FLAG(double, max_update_norm, 0, "reject shard updates above this L2 norm (0: off)");
ABSL_FLAG(double, max_update_scale, 100,
          "reject updates with a value above this many times the shard's largest |value| "
          "(at least 1): one agent cannot swamp an aggregate or overflow it");
ABSL_FLAG(int, link_timeout_s, 60,
          "drop a connection that delivers no whole frame for this long; must exceed the "
          "time the slowest link takes for the largest tensor");
ABSL_FLAG(int, send_queue, 1000, "messages queued per agent before replies to it are dropped");
ABSL_FLAG(std::string, server_optimizer, "fedavg", "fedavg or fedadam");
ABSL_FLAG(double, server_lr, 1e-2, "FedAdam's server learning rate");
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

absl::StatusOr<std::vector<PhaseSpan>> ParseSchedule(const std::string& text) {
  std::vector<PhaseSpan> spans;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(part, ':');
    PhaseSpan span;
    if (kv.size() != 2 || !absl::SimpleAtoi(kv[1], &span.rounds) || span.rounds < 1 ||
        span.rounds > 100000) {
      return absl::InvalidArgumentError(absl::StrCat("--schedule: bad entry '", part, "'"));
    }
    if (kv[0] == "pretrain") {
      span.phase = Phase::kPretrain;
    } else if (kv[0] == "learn") {
      span.phase = Phase::kLearnPrecision;
    } else if (kv[0] == "finetune") {
      span.phase = Phase::kFinetune;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--schedule: unknown phase '", kv[0], "'"));
    }
    spans.push_back(span);
  }
  if (spans.empty()) return absl::InvalidArgumentError("--schedule is empty");
  return spans;
}

absl::Status ParseCodec(const std::string& text, Codec* codec, int* bits) {
  *bits = 0;
  if (text == "fp32") {
    *codec = Codec::kFp32;
  } else if (text == "fp16") {
    *codec = Codec::kFp16;
  } else if (text == "sign-ef") {
    *codec = Codec::kSignEf;
  } else if (text.size() == 2 && text[0] == 'q' && text[1] >= '2' && text[1] <= '8') {
    *codec = Codec::kQ;
    *bits = text[1] - '0';
  } else {
    return absl::InvalidArgumentError(absl::StrCat("codec '", text, "': expected fp32, fp16, q2..q8 or sign-ef"));
  }
  return absl::OkStatus();
}

struct RoundRow {
  uint64_t round;
  Phase phase;
  double accuracy;
  double weight_bits, act_bits, model_kb;
  int64_t uplink_bytes, fp32_bytes;
  uint64_t peak_memory;
  int reported, rejected;
  double seconds;
};

void PrintTable(const std::vector<RoundRow>& rows) {
  std::printf("\n%5s  %-15s %9s %7s %7s %10s %12s %8s %11s\n", "round", "phase", "test acc",
              "w bits", "a bits", "model kB", "uplink B", "vs fp32", "peak mem MB");
  for (const RoundRow& r : rows) {
    std::printf("%5llu  %-15s %8.2f%% %7.2f %7.2f %10.1f %12lld %7.1fx %11.1f\n",
                static_cast<unsigned long long>(r.round), PhaseName(r.phase), 100 * r.accuracy,
                r.weight_bits, r.act_bits, r.model_kb, static_cast<long long>(r.uplink_bytes),
                r.uplink_bytes > 0 ? static_cast<double>(r.fp32_bytes) / r.uplink_bytes : 0.0,
                r.peak_memory / 1048576.0);
  }
}

absl::Status Serve() {
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  const std::string state_dir = absl::GetFlag(FLAGS_state_dir);
  RETURN_IF_ERROR(Annotate(CreateDirectories(state_dir), "--state_dir"));
  ASSIGN_OR_RETURN(const QuantArch arch, MakeQuantArch(absl::GetFlag(FLAGS_arch)));
  RunConfig config;
  ASSIGN_OR_RETURN(config.schedule, ParseSchedule(absl::GetFlag(FLAGS_schedule)));
  config.fraction = absl::GetFlag(FLAGS_fraction);
  config.min_agents = absl::GetFlag(FLAGS_min_agents);
  config.quorum = absl::GetFlag(FLAGS_quorum);
  config.deadline = absl::Seconds(absl::GetFlag(FLAGS_deadline_s));
  config.async = absl::GetFlag(FLAGS_async);
  if (!(config.fraction > 0 && config.fraction <= 1) || !(config.quorum > 0 && config.quorum <= 1) ||
      config.min_agents < 1 || absl::GetFlag(FLAGS_deadline_s) < 1) {
    return absl::InvalidArgumentError(
        "--fraction and --quorum must be in (0, 1], --min_agents and --deadline_s positive");
  }
  config.hyper.local_steps = absl::GetFlag(FLAGS_local_steps);
  config.hyper.batch_size = absl::GetFlag(FLAGS_batch);
  config.hyper.learning_rate = static_cast<float>(absl::GetFlag(FLAGS_lr));
  config.hyper.quantizer_every = absl::GetFlag(FLAGS_quantizer_every);
  const double budget_bits = absl::GetFlag(FLAGS_budget_bits);
  config.hyper.weight_budget_kb = static_cast<float>(budget_bits * arch.weight_count() / 8000.0);
  config.hyper.activation_budget_kb =
      static_cast<float>(budget_bits * arch.activation_elements() / 8000.0);
  RETURN_IF_ERROR(ParseCodec(absl::GetFlag(FLAGS_uplink), &config.uplink, &config.uplink_bits));
  Codec downlink;
  int unused_bits;
  RETURN_IF_ERROR(ParseCodec(absl::GetFlag(FLAGS_downlink), &downlink, &unused_bits));
  if (downlink != Codec::kFp32 && downlink != Codec::kFp16) {
    return absl::InvalidArgumentError("--downlink must be fp32 or fp16");
  }
  const std::string rule = absl::GetFlag(FLAGS_rule);
  config.aggregation.rule = rule == "median"    ? AggregationRule::kMedian
                            : rule == "trimmed" ? AggregationRule::kTrimmedMean
                                                : AggregationRule::kFedAvg;
  if (rule != "fedavg" && rule != "median" && rule != "trimmed") {
    return absl::InvalidArgumentError(absl::StrCat("--rule=", rule, ": expected fedavg, median or trimmed"));
  }
  config.aggregation.max_update_norm = absl::GetFlag(FLAGS_max_update_norm);
  config.aggregation.max_update_scale = absl::GetFlag(FLAGS_max_update_scale);
  if (!(config.aggregation.max_update_norm >= 0) || !(config.aggregation.max_update_scale > 0) ||
      absl::GetFlag(FLAGS_link_timeout_s) < 2 || absl::GetFlag(FLAGS_send_queue) < 1) {
    return absl::InvalidArgumentError(
        "--max_update_norm must be >= 0, --max_update_scale > 0, --link_timeout_s >= 2 and "
        "--send_queue >= 1");
  }

  const std::string metrics_address = absl::GetFlag(FLAGS_metrics_address);
  if (!metrics_address.empty()) {
    RETURN_IF_ERROR(ValidateListenAddress(metrics_address, "--metrics_address"));
  }
  const bool check_only = absl::GetFlag(FLAGS_check_config);
  std::unique_ptr<CoordinatorMetrics> metrics;
  if (!check_only) {
    MetricsOptions metrics_options;
    metrics_options.address = metrics_address;
    ASSIGN_OR_RETURN(metrics, CoordinatorMetrics::Start(metrics_options));
    if (!metrics_address.empty()) {
      std::fprintf(stderr, "[coordinator] metrics on http://%s/metrics (port %d)\n",
                   metrics_address.c_str(), metrics->port());
    }
  }

  // Model: resume from the checkpoint, or start a fresh one calibrated at
  // the pretrain precision on a slice of the training data.
  const std::string checkpoint_path = state_dir + "/checkpoint.bin";
  const std::string metrics_path = state_dir + "/metrics.jsonl";
  QuantNet net(arch, QuantNetOptions());
  ModelState model;
  uint64_t resumed_rounds = 0;
  absl::StatusOr<Checkpoint> checkpoint = ReadCheckpoint(checkpoint_path);
  if (checkpoint.ok()) {
    model = checkpoint->model;
    resumed_rounds = checkpoint->completed_rounds;
    RETURN_IF_ERROR(ImportShards(net, model.shards));
    std::fprintf(stderr, "[coordinator] resumed from %s: %llu rounds done, model v%llu\n",
                 checkpoint_path.c_str(), static_cast<unsigned long long>(resumed_rounds),
                 static_cast<unsigned long long>(model.version));
  } else if (checkpoint.status().code() == absl::StatusCode::kNotFound) {
    ASSIGN_OR_RETURN(const Dataset calibration,
                     LoadFashionMnist(absl::GetFlag(FLAGS_data_dir), DataSplit::kTrain, {256, 0}));
    net.Calibrate(calibration.images, absl::GetFlag(FLAGS_pretrain_bits));
    model.shards = ExportShards(net);
    std::remove(metrics_path.c_str());
  } else {
    return Annotate(checkpoint.status(), "refusing to start over a damaged checkpoint");
  }
  Dataset eval;
  if (absl::GetFlag(FLAGS_eval_samples) > 0) {
    ASSIGN_OR_RETURN(eval, LoadFashionMnist(absl::GetFlag(FLAGS_data_dir), DataSplit::kTest,
                                            {absl::GetFlag(FLAGS_eval_samples), 0}));
  }

  ZmqServerOptions server;
  server.endpoint = absl::GetFlag(FLAGS_listen);
  server.link_timeout = absl::Seconds(absl::GetFlag(FLAGS_link_timeout_s));
  server.send_queue_messages = absl::GetFlag(FLAGS_send_queue);
  if (!absl::GetFlag(FLAGS_plaintext)) {
    if (absl::GetFlag(FLAGS_key).empty() || absl::GetFlag(FLAGS_allowlist).empty()) {
      return absl::InvalidArgumentError(
          "CURVE needs --key and --allowlist (or --plaintext for loopback development)");
    }
    CurveServerConfig curve;
    ASSIGN_OR_RETURN(curve.keys, ReadKeyPair(absl::GetFlag(FLAGS_key)));
    ASSIGN_OR_RETURN(const std::string allow, ReadFileToString(absl::GetFlag(FLAGS_allowlist), 1 << 24));
    ASSIGN_OR_RETURN(curve.allowlist, ParseAllowlist(allow));
    server.curve = curve;
  }
  if (check_only) {
    std::printf("configuration OK: %s, %d rounds (%s), %s uplink, %s aggregation, %s, state in %s (%s)\n",
                arch.name.c_str(), RoundEngine(config, nullptr).total_rounds(),
                absl::GetFlag(FLAGS_schedule).c_str(), absl::GetFlag(FLAGS_uplink).c_str(),
                rule.c_str(), server.curve ? "CURVE" : "PLAINTEXT", state_dir.c_str(),
                resumed_rounds > 0 ? absl::StrCat("resumes after round ", resumed_rounds).c_str()
                                   : "fresh start");
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ZmqServerTransport> transport, ZmqServerTransport::Create(server));
  std::fprintf(stderr, "[coordinator] listening on %s (%s), %d rounds, model %lld parameters\n",
               transport->bound_endpoint().c_str(), server.curve ? "CURVE" : "PLAINTEXT",
               RoundEngine(config, nullptr).total_rounds(),
               static_cast<long long>(model.parameter_count()));

  ServiceOptions service_options;
  service_options.run = config;
  service_options.liveness.heartbeat_interval = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_ms));
  service_options.liveness.timeout = absl::Seconds(absl::GetFlag(FLAGS_agent_timeout_s));
  service_options.downlink = downlink;
  service_options.checkpoint_path = checkpoint_path;
  const std::string server_optimizer = absl::GetFlag(FLAGS_server_optimizer);
  if (server_optimizer == "fedadam") {
    service_options.server_optimizer.kind = ServerOptimizerKind::kFedAdam;
    service_options.server_optimizer.learning_rate = absl::GetFlag(FLAGS_server_lr);
  } else if (server_optimizer != "fedavg") {
    return absl::InvalidArgumentError(
        absl::StrCat("--server_optimizer=", server_optimizer, ": expected fedavg or fedadam"));
  }
  const int batch = absl::GetFlag(FLAGS_batch);
  service_options.planner = MakeMemoryPlanner(arch, batch);

  std::vector<RoundRow> rows;
  const absl::Time run_start = absl::Now();
  int total_rounds = RoundEngine(config, nullptr).total_rounds();
  auto on_round = [&](const RoundReport& report, const ModelState& updated) {
    absl::Status loaded = ImportShards(net, updated.shards);
    RoundRow row;
    row.round = report.summary.round;
    row.phase = report.summary.phase;
    row.accuracy = loaded.ok() && eval.size() > 0 ? EvaluateQuant(net, eval).value_or(0.0) : 0.0;
    const SizeReport size = net.Size();
    row.weight_bits = size.mean_weight_bits;
    row.act_bits = size.mean_activation_bits;
    row.model_kb = size.total_kb();
    row.uplink_bytes = report.summary.uplink_bytes;
    row.fp32_bytes = report.fp32_uplink_bytes;
    row.peak_memory = report.summary.max_peak_memory;
    row.reported = report.summary.reported;
    row.rejected = static_cast<int>(report.summary.aggregation.rejected);
    row.seconds = report.seconds;
    rows.push_back(row);
    ModelStats stats;
    stats.test_accuracy = eval.size() > 0 && loaded.ok() ? row.accuracy : -1;
    stats.model_bytes = 1000 * row.model_kb;
    stats.weight_bits = row.weight_bits;
    stats.activation_bits = row.act_bits;
    metrics->OnRound(report, stats);
    std::ofstream(metrics_path, std::ios::app) << absl::StrFormat(
        "{\"round\": %d, \"phase\": \"%s\", \"test_accuracy\": %.4f, \"mean_weight_bits\": %.3f, "
        "\"mean_activation_bits\": %.3f, \"model_kb\": %.2f, \"uplink_bytes\": %d, "
        "\"fp32_uplink_bytes\": %d, \"peak_device_memory_bytes\": %d, \"reported\": %d, "
        "\"rejected_updates\": %d, \"seconds\": %.2f}\n",
        row.round, PhaseName(row.phase), row.accuracy, row.weight_bits, row.act_bits, row.model_kb,
        row.uplink_bytes, row.fp32_bytes, row.peak_memory, row.reported, row.rejected, row.seconds);
    const double elapsed = absl::ToDoubleSeconds(absl::Now() - run_start);
    const int left = total_rounds - static_cast<int>(row.round);
    std::fprintf(stderr,
                 "[coordinator] round %llu/%d done: test acc %.2f%%, %.2f w bits, %.1f kB, "
                 "uplink %lld B (%.1fx less than fp32), %d reported, %d rejected, %.1fs; ETA %.0fs\n",
                 static_cast<unsigned long long>(row.round), total_rounds, 100 * row.accuracy,
                 row.weight_bits, row.model_kb, static_cast<long long>(row.uplink_bytes),
                 row.uplink_bytes ? static_cast<double>(row.fp32_bytes) / row.uplink_bytes : 0.0,
                 row.reported, row.rejected, row.seconds,
                 elapsed / std::max<size_t>(1, rows.size()) * left);
  };
  CoordinatorService service(service_options, model, resumed_rounds, transport.get(), on_round);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  // The table and the plot, once the last round is in.
  auto report_run = [&]() -> absl::Status {
    if (rows.empty()) return absl::OkStatus();
    PrintTable(rows);
    PlotSeries accuracy{"test accuracy (%)"}, size{"model W+A (kB / 10)"};
    for (const RoundRow& r : rows) {
      accuracy.x.push_back(static_cast<double>(r.round));
      accuracy.y.push_back(100 * r.accuracy);
      size.x.push_back(static_cast<double>(r.round));
      size.y.push_back(r.model_kb / 10);
    }
    PlotOptions plot;
    plot.title = "Federated training: accuracy and model size per round";
    plot.x_label = "round";
    plot.y_label = "accuracy (%) / model size (kB / 10)";
    RETURN_IF_ERROR(WriteFileAtomically(state_dir + "/rounds.svg", RenderSvgPlot({accuracy, size}, plot)));
    std::printf("\nmetrics: %s\nplot:    %s/rounds.svg\n", metrics_path.c_str(), state_dir.c_str());
    std::fflush(stdout);
    return absl::OkStatus();
  };
  metrics->SetReady(true);
  absl::Time published = absl::InfinitePast();
  const bool exit_when_done = absl::GetFlag(FLAGS_exit_when_done);
  bool reported = service.done();
  if (reported) {
    std::fprintf(stderr, "[coordinator] the schedule's %d rounds are all done\n", total_rounds);
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
      RETURN_IF_ERROR(report_run());
      if (!exit_when_done) {
        std::fprintf(stderr, "[coordinator] run complete; serving agents and metrics until stopped\n");
      }
    }
  }
  metrics->Publish(service, absl::Now());
  if (!reported) RETURN_IF_ERROR(report_run());
  if (g_stop) std::fprintf(stderr, "[coordinator] stopped by signal; state is in %s\n", state_dir.c_str());
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
