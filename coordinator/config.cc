#include "coordinator/config.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/schedule/learning_rate.h"
#include "coordinator/ops/http_server.h"
#include "common/status/status_macros.h"
#include "coordinator/shard_planner.h"
#include "models/bnn/arch.h"
#include "models/quant/size_model.h"

namespace fedge {
namespace {

absl::Status Bad(absl::string_view message) { return absl::InvalidArgumentError(message); }

}  // namespace

absl::StatusOr<std::vector<PhaseSpan>> ParseSchedule(const std::string& text) {
  std::vector<PhaseSpan> spans;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(part, ':');
    PhaseSpan span;
    if (kv.size() != 2 || !absl::SimpleAtoi(kv[1], &span.rounds) || span.rounds < 1 ||
        span.rounds > 100000) {
      return Bad(absl::StrCat("--schedule: bad entry '", part, "' (expected phase:rounds)"));
    }
    if (kv[0] == "pretrain") {
      span.phase = Phase::kPretrain;
    } else if (kv[0] == "learn") {
      span.phase = Phase::kLearnPrecision;
    } else if (kv[0] == "finetune") {
      span.phase = Phase::kFinetune;
    } else {
      return Bad(absl::StrCat("--schedule: unknown phase '", kv[0],
                              "' (expected pretrain, learn or finetune)"));
    }
    spans.push_back(span);
  }
  if (spans.empty()) return Bad("--schedule is empty");
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
    return Bad(absl::StrCat("codec '", text, "': expected fp32, fp16, q2..q8 or sign-ef"));
  }
  return absl::OkStatus();
}

absl::StatusOr<CoordinatorConfig> ParseCoordinatorConfig(const CoordinatorFlags& f) {
  CoordinatorConfig c;
  std::optional<InputShape> input;
  if (!f.input_shape.empty()) {
    absl::StatusOr<InputShape> parsed = ParseInputShape(f.input_shape);
    if (!parsed.ok()) return Annotate(parsed.status(), "--input_shape");
    input = *parsed;
  }
  absl::StatusOr<ModelSpec> model = MakeModelSpec(f.arch, input);
  if (!model.ok()) return Annotate(model.status(), "--arch");
  c.model = *std::move(model);
  ServiceOptions& service = c.service;
  RunConfig& run = service.run;
  ASSIGN_OR_RETURN(run.schedule, ParseSchedule(f.schedule));
  if (!(f.fraction > 0 && f.fraction <= 1) || !(f.quorum > 0 && f.quorum <= 1) ||
      f.min_agents < 1 || f.deadline_s < 1) {
    return Bad("--fraction and --quorum must be in (0, 1], --min_agents and --deadline_s positive");
  }
  run.fraction = f.fraction;
  run.min_agents = f.min_agents;
  run.quorum = f.quorum;
  run.deadline = absl::Seconds(f.deadline_s);
  run.async = f.async;
  if (f.local_steps < 1 || f.batch < 1 || !(f.lr > 0) || f.quantizer_every < 1 ||
      !(f.budget_bits > 0) || !(f.activation_budget_bits >= 0) || f.pretrain_bits < 2 ||
      f.pretrain_bits > 8) {
    return Bad("--local_steps, --batch, --lr, --quantizer_every and --budget_bits must be "
               "positive, --activation_budget_bits positive or 0, --pretrain_bits in [2, 8]");
  }
  run.hyper.local_steps = f.local_steps;
  run.hyper.batch_size = f.batch;
  run.hyper.learning_rate = static_cast<float>(f.lr);
  absl::StatusOr<LrSchedule> lr_schedule = ParseLrSchedule(f.lr_schedule);
  if (!lr_schedule.ok()) return Bad(absl::StrCat("--lr_schedule: ", lr_schedule.status().message()));
  run.lr_schedule = *lr_schedule;
  run.hyper.quantizer_every = f.quantizer_every;
  absl::StatusOr<PenaltyForm> penalty = ParsePenaltyForm(f.penalty);
  if (!penalty.ok()) return Bad(absl::StrCat("--penalty=", f.penalty, ": expected relative or absolute"));
  absl::StatusOr<SizeAccounting> accounting = ParseSizeAccounting(f.size_accounting);
  if (!accounting.ok()) {
    return Bad(absl::StrCat("--size_accounting=", f.size_accounting,
                            ": expected reference or project"));
  }
  c.model.quant.accounting = *accounting;
  run.hyper.penalty_form = static_cast<uint8_t>(*penalty);
  run.hyper.size_accounting = static_cast<uint8_t>(*accounting);
  run.hyper.lambda_w = run.hyper.lambda_a = static_cast<float>(DefaultLambda(*penalty));
  // Bit budgets are the mixed-precision family's; a binary network is at 1
  // bit already.
  if (c.model.family == ModelFamily::kMixedPrecision) {
    run.hyper.weight_budget_kb = static_cast<float>(c.model.quant.WeightBudgetKb(f.budget_bits));
    run.hyper.activation_budget_kb =
        static_cast<float>(c.model.quant.ActivationBudgetKb(
            f.activation_budget_bits > 0 ? f.activation_budget_bits : f.budget_bits));
  }
  RETURN_IF_ERROR(Annotate(ParseCodec(f.uplink, &run.uplink, &run.uplink_bits), "--uplink"));
  // mixed: trainable layers' weights as fp16 (mixed-q8: 8-bit codes, one
  // scale per output channel), frozen ones as the codes their forward uses.
  c.mixed_downlink = f.downlink == "mixed" || f.downlink == "mixed-q8";
  const std::string trainable = f.downlink == "mixed" ? "fp16"
                                : f.downlink == "mixed-q8" ? "q8"
                                                           : f.downlink;
  RETURN_IF_ERROR(Annotate(ParseCodec(trainable, &service.downlink, &service.downlink_bits),
                           "--downlink"));
  if (service.downlink != Codec::kFp32 && service.downlink != Codec::kFp16 &&
      !(c.mixed_downlink && service.downlink == Codec::kQ)) {
    return Bad("--downlink must be mixed, mixed-q8, fp32 or fp16");
  }
  if (f.rule == "fedavg") {
    run.aggregation.rule = AggregationRule::kFedAvg;
  } else if (f.rule == "median") {
    run.aggregation.rule = AggregationRule::kMedian;
  } else if (f.rule == "trimmed") {
    run.aggregation.rule = AggregationRule::kTrimmedMean;
  } else {
    return Bad(absl::StrCat("--rule=", f.rule, ": expected fedavg, median or trimmed"));
  }
  if (!(f.max_update_norm >= 0) || !(f.max_update_scale > 0) || (f.link_timeout_s < 2 && f.link_timeout_s != 0) ||
      f.send_queue < 1) {
    return Bad("--max_update_norm must be >= 0, --max_update_scale > 0, --link_timeout_s >= 2 (or 0) "
               "and --send_queue >= 1");
  }
  run.aggregation.max_update_norm = f.max_update_norm;
  run.aggregation.max_update_scale = f.max_update_scale;
  absl::StatusOr<ServerOptimizerOptions> server_optimizer =
      ParseServerOptimizer(f.server_optimizer, f.server_lr, f.server_momentum);
  if (!server_optimizer.ok()) return server_optimizer.status();
  service.server_optimizer = *server_optimizer;
  if (f.heartbeat_ms < 10 || f.agent_timeout_s < 1 ||
      absl::Seconds(f.agent_timeout_s) <= absl::Milliseconds(f.heartbeat_ms)) {
    return Bad("--heartbeat_ms must be >= 10 and --agent_timeout_s longer than a heartbeat");
  }
  service.liveness.heartbeat_interval = absl::Milliseconds(f.heartbeat_ms);
  service.liveness.timeout = absl::Seconds(f.agent_timeout_s);
  service.planner = MakeMemoryPlanner(c.model, f.batch);
  c.total_rounds = RoundEngine(run, nullptr).total_rounds();

  if (f.state_dir.empty()) return Bad("--state_dir is required");
  c.state_dir = f.state_dir;
  service.checkpoint_path = f.state_dir + "/checkpoint.bin";
  c.listen = f.listen;
  c.plaintext = f.plaintext;
  if (!f.plaintext && (f.key.empty() || f.allowlist.empty())) {
    return Bad("CURVE needs --key and --allowlist (or --plaintext for loopback development)");
  }
  c.key_path = f.key;
  c.allowlist_path = f.allowlist;
  c.link_timeout = absl::Seconds(f.link_timeout_s);
  c.send_queue = f.send_queue;
  if (!f.metrics_address.empty()) {
    RETURN_IF_ERROR(ValidateListenAddress(f.metrics_address, "--metrics_address"));
  }
  c.metrics_address = f.metrics_address;
  if (f.eval_samples < 0 || f.threads < 1) {
    return Bad("--eval_samples must be >= 0 and --threads >= 1");
  }
  c.eval_samples = f.eval_samples;
  c.threads = f.threads;
  c.pretrain_bits = f.pretrain_bits;
  return c;
}

}  // namespace fedge
