// Benchmark: the federated run against the same network trained centrally,
// on the same data and the same number of samples, in one process.
// Federated runs use the real coordinator service, agent sessions and task
// runners over the in-memory transport (training is real; only the network
// is simulated). Either family (models/family):
//   --arch=fmnist-cnn  the mixed-precision net through the three-phase
//                      schedule; central reference: the same layers in float
//   --arch=cnv         the binary CNV with memory-saving backprop on every
//                      agent (Fashion-MNIST padded to 32x32); central
//                      reference: the same BNN trained by the standard
//                      float32 trainer (models/bnn/standard_net.h)
// Reports test accuracy and bits, the gap to central, uplink bytes of the
// run's codec against fp32 updates, and downlink bytes per round of the
// mixed-precision downlink (layers an agent runs frozen as codes or signs)
// against fp32 shards, with --head_only agents training only the last
// layer; a second run with all-fp16 downlink shows what the codes cost in
// accuracy, and an fp32-uplink run (mixed precision) what sign-ef costs.
// Each run repeats over --seeds (partition, initial model, task sampling;
// by default 3 for mixed precision, 1 for a binary network) and reports mean
// and standard deviation; the central reference runs once per seed.
//
//   bazel run -c opt //tests:federated_accuracy_bench -- --out_dir=$PWD/bench_results
//   bazel run -c opt //tests:federated_accuracy_bench -- --arch=cnv --schedule=10 \
//       --head_only=0.5 --out_dir=$PWD/bench_results

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/io/file_util.h"
#include "common/io/svg_plot.h"
#include "common/schedule/learning_rate.h"
#include "common/stats/summary.h"
#include "common/status/status_macros.h"
#include "common/transport/testing/in_memory_transport.h"
#include "coordinator/server_optimizer.h"
#include "coordinator/service.h"
#include "device_agent/agent_loop.h"
#include "device_agent/task_executor.h"
#include "device_agent/task_runner.h"
#include "models/bnn/standard_net.h"
#include "models/bnn/trainer.h"
#include "models/data/partition.h"
#include "models/family/federated_model.h"
#include "models/memory/counting_allocator.h"
#include "models/quant/phase_trainer.h"
#include "models/quant/quant_net.h"

ABSL_FLAG(std::string, arch, "fmnist-cnn", "fmnist-cnn (mixed precision) or mlp, cnv, binarynet");
ABSL_FLAG(int, agents, 10, "simulated agents");
ABSL_FLAG(double, alpha, 0.5, "Dirichlet concentration of the non-IID split");
ABSL_FLAG(int64_t, train_samples, 60000, "training samples shared by the agents");
ABSL_FLAG(int64_t, test_samples, 10000, "test samples");
ABSL_FLAG(std::string, schedule, "",
          "rounds: pretrain,learn,finetune for mixed precision (default 3,6,3); one number for a "
          "binary network (default 10)");
ABSL_FLAG(int, local_steps, 60, "steps per task");
ABSL_FLAG(int, batch, 64, "batch size");
ABSL_FLAG(double, lr, 1e-3, "learning rate");
ABSL_FLAG(std::string, lr_schedule, "constant",
          "constant, or cosine (each round's rate decays over the run, the central "
          "reference's over its steps)");
ABSL_FLAG(double, budget_bits, 2.0, "mixed precision: average bits of the size budget");
ABSL_FLAG(double, activation_budget_bits, 0,
          "mixed precision: average bits of the activation budget (0: --budget_bits)");
ABSL_FLAG(double, head_only, 0.0,
          "share of the agents that train only the last layer (the rest frozen)");
ABSL_FLAG(std::string, downlink, "mixed",
          "the main run's downlink: mixed (trainable layers fp16) or mixed-q8 (8-bit codes)");
ABSL_FLAG(std::string, uplink, "sign-ef", "the main run's uplink: sign-ef or fp32");
ABSL_FLAG(bool, compare_downlink, true, "also run with all-fp16 downlink");
ABSL_FLAG(bool, central, true, "also train the central reference");
ABSL_FLAG(bool, compare_uplink, true, "mixed precision: also run with fp32 uplink");
ABSL_FLAG(std::string, server_optimizer, "fedavg", "fedavg, fedavgm or fedadam");
ABSL_FLAG(double, server_lr, 0, "server learning rate (0: the optimizer's default)");
ABSL_FLAG(bool, pool_statistics, true,
          "the norms' statistics of the agents' data pooled each round (false: averaged)");
ABSL_FLAG(double, server_momentum, 0.9, "fedavgm's momentum");
ABSL_FLAG(int, first_seed, 1,
          "the first seed (seeds first_seed .. first_seed + seeds - 1: one process per seed "
          "runs them side by side)");
ABSL_FLAG(int, seeds, 0,
          "seeds (partition, initial model, sampling) per run, reported as mean +- standard "
          "deviation (0: 3 for mixed precision, 1 for a binary network, whose run takes ~40 min)");
ABSL_FLAG(std::string, penalty, "relative", "mixed precision: relative or absolute size penalty");
ABSL_FLAG(std::string, accounting, "reference", "mixed precision: reference or project accounting");
ABSL_FLAG(int, quantizer_every, 1, "mixed precision: quantizer update interval in steps");
ABSL_FLAG(int, threads, 2, "intra-op threads");
ABSL_FLAG(bool, keep_optimizer_state, false,
          "binary networks: each agent's Adam moments carry over from one task to the next");
ABSL_FLAG(int, eval_every, 1,
          "evaluate the global model every this many rounds (the final model is always "
          "evaluated); evaluation dominates a round of few local steps");
ABSL_FLAG(std::string, out_dir, "bench_results", "where JSON goes");

namespace fedge {
namespace {

double ActivationBudgetBits() {
  const double a = absl::GetFlag(FLAGS_activation_budget_bits);
  return a > 0 ? a : absl::GetFlag(FLAGS_budget_bits);
}

struct FedResult {
  double accuracy = 0;
  double weight_bits = 0, act_bits = 0, model_kb = 0;
  double joint_bits = 0;  // over weights and activations together
  int64_t uplink_bytes = 0, fp32_uplink_bytes = 0;
  int64_t downlink_bytes = 0, fp32_downlink_bytes = 0;
  int rounds = 0;
  double seconds = 0;
  std::vector<double> accuracy_per_round;
  std::vector<int> evaluated_rounds;  // the round each accuracy_per_round entry belongs to
  // Binary networks: the final model with its norms' statistics measured
  // again on training samples under the final weights (a diagnostic of the
  // averaged statistics).
  double restat_accuracy = -1;
};

struct FedConfig {
  std::string label;
  Codec uplink = Codec::kSignEf;
  bool mixed_downlink = true;
  bool q8_trainable = false;
};

// An agent: the real agent loop, training each task inline with the real
// task runner.
class SimAgent {
 public:
  SimAgent(std::unique_ptr<Transport> transport, const std::string& id,
           std::unique_ptr<FederatedModel> model, Dataset data)
      : link_(std::move(transport)),
        runner_(std::move(model), std::move(data), Dataset(), RunnerOptions()),
        executor_([this](const Task& task) { return runner_.Run(task); }),
        loop_(link_.get(), &executor_, Options(id, runner_.samples())) {}

  static TaskRunnerOptions RunnerOptions() {
    TaskRunnerOptions o;
    o.keep_optimizer_state = absl::GetFlag(FLAGS_keep_optimizer_state);
    return o;
  }

  static AgentLoopOptions Options(const std::string& id, int64_t samples) {
    AgentLoopOptions o;
    o.session.device_id = id;
    o.session.registration = Register{uint64_t{1} << 30, 1, static_cast<uint64_t>(samples), "bench"};
    o.session.coordinator_timeout = absl::Hours(1);
    // A failed task is a failed benchmark: say why.
    o.log = [](const std::string& line) {
      if (line.find("failed") != std::string::npos) std::fprintf(stderr, "%s\n", line.c_str());
    };
    return o;
  }

  absl::Status Step(absl::Time now) {
    loop_.Step(now, absl::ZeroDuration());
    if (loop_.bad_messages() > 0) return absl::InternalError("an agent received a bad message");
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<Transport> link_;
  TaskRunner runner_;
  InlineExecutor executor_;
  AgentLoop loop_;
};

absl::StatusOr<std::vector<PhaseSpan>> Schedule(const ModelSpec& spec) {
  std::string text = absl::GetFlag(FLAGS_schedule);
  const bool binary = spec.family == ModelFamily::kBinary;
  if (text.empty()) text = binary ? "10" : "3,6,3";
  std::vector<int> rounds;
  for (absl::string_view r : absl::StrSplit(text, ',')) {
    int v = 0;
    if (!absl::SimpleAtoi(r, &v) || v < 1) return absl::InvalidArgumentError("bad --schedule");
    rounds.push_back(v);
  }
  if (binary) {
    if (rounds.size() != 1) return absl::InvalidArgumentError("--schedule: one number for " + spec.name);
    return std::vector<PhaseSpan>{{Phase::kPretrain, rounds[0]}};
  }
  if (rounds.size() != 3) return absl::InvalidArgumentError("--schedule needs three numbers");
  return std::vector<PhaseSpan>{{Phase::kPretrain, rounds[0]},
                                {Phase::kLearnPrecision, rounds[1]},
                                {Phase::kFinetune, rounds[2]}};
}

absl::StatusOr<FedResult> RunFederated(const ModelSpec& spec, const Dataset& train,
                                       const std::vector<std::vector<int64_t>>& parts,
                                       const Dataset& test, const FedConfig& fed, uint64_t seed) {
  const auto start = std::chrono::steady_clock::now();
  ServiceOptions options;
  ASSIGN_OR_RETURN(options.run.schedule, Schedule(spec));
  options.run.min_agents = static_cast<int>(parts.size());
  options.run.deadline = absl::Hours(1);
  options.run.hyper.local_steps = absl::GetFlag(FLAGS_local_steps);
  options.run.hyper.batch_size = absl::GetFlag(FLAGS_batch);
  options.run.hyper.learning_rate = static_cast<float>(absl::GetFlag(FLAGS_lr));
  options.run.seed = seed;
  ASSIGN_OR_RETURN(options.run.lr_schedule, ParseLrSchedule(absl::GetFlag(FLAGS_lr_schedule)));
  if (spec.family == ModelFamily::kMixedPrecision) {
    ASSIGN_OR_RETURN(const PenaltyForm form, ParsePenaltyForm(absl::GetFlag(FLAGS_penalty)));
    options.run.hyper.weight_budget_kb =
        static_cast<float>(spec.quant.WeightBudgetKb(absl::GetFlag(FLAGS_budget_bits)));
    options.run.hyper.activation_budget_kb =
        static_cast<float>(spec.quant.ActivationBudgetKb(ActivationBudgetBits()));
    options.run.hyper.penalty_form = static_cast<uint8_t>(form);
    options.run.hyper.size_accounting = static_cast<uint8_t>(spec.quant.accounting);
    options.run.hyper.lambda_w = options.run.hyper.lambda_a = static_cast<float>(DefaultLambda(form));
    options.run.hyper.quantizer_every = static_cast<uint32_t>(absl::GetFlag(FLAGS_quantizer_every));
  }
  options.run.uplink = fed.uplink;
  ASSIGN_OR_RETURN(options.server_optimizer,
                   ParseServerOptimizer(absl::GetFlag(FLAGS_server_optimizer),
                                        absl::GetFlag(FLAGS_server_lr),
                                        absl::GetFlag(FLAGS_server_momentum)));
  options.pool_statistics = absl::GetFlag(FLAGS_pool_statistics);
  options.downlink = fed.q8_trainable ? Codec::kQ : Codec::kFp16;
  options.downlink_bits = fed.q8_trainable ? 8 : 0;
  options.log = false;
  // Agents whose index falls in the head-only share train the last layer.
  const int head_only = static_cast<int>(absl::GetFlag(FLAGS_head_only) * parts.size() + 0.5);
  const uint32_t last = static_cast<uint32_t>(spec.layer_count() - 1);
  options.planner = [head_only, last](const AgentRecord& agent) -> std::optional<ShardPlan> {
    int index = 0;
    (void)absl::SimpleAtoi(agent.device_id.substr(agent.device_id.rfind('-') + 1), &index);
    return ShardPlan{index < head_only ? last : 0u, 0};
  };

  ASSIGN_OR_RETURN(std::unique_ptr<FederatedModel> net, FederatedModel::Create(spec, seed));
  RETURN_IF_ERROR(net->Initialize(Subset(train, at::arange(256)), 8));
  ModelState initial;
  initial.shards = net->ExportShards();
  if (fed.mixed_downlink) {
    options.frozen_codings = [&net](const ModelState& model) {
      return net->ImportShards(model.shards).ok() ? net->FrozenCodings()
                                                  : std::map<std::string, FrozenCoding>();
    };
  }

  InMemoryNetwork network;
  std::unique_ptr<Transport> server = network.Bind();
  FedResult result;
  const uint64_t eval_every = static_cast<uint64_t>(absl::GetFlag(FLAGS_eval_every));
  CoordinatorService service(options, initial, 0, server.get(),
                             [&](const RoundReport& r, const ModelState& model) {
                               result.uplink_bytes += r.summary.uplink_bytes;
                               result.fp32_uplink_bytes += r.fp32_uplink_bytes;
                               result.downlink_bytes += r.downlink_bytes;
                               result.fp32_downlink_bytes += r.fp32_downlink_bytes;
                               ++result.rounds;
                               if (r.summary.round % eval_every == 0 &&
                                   net->ImportShards(model.shards).ok()) {
                                 const double acc = net->Evaluate(test, 500).value_or(0);
                                 result.accuracy_per_round.push_back(acc);
                                 result.evaluated_rounds.push_back(static_cast<int>(r.summary.round));
                                 std::fprintf(stderr,
                                              "  [%s] round %llu %-15s acc %.2f%%, downlink %lld B "
                                              "(fp32 %lld B)\n",
                                              fed.label.c_str(),
                                              static_cast<unsigned long long>(r.summary.round),
                                              PhaseName(r.summary.phase), 100 * acc,
                                              static_cast<long long>(r.downlink_bytes),
                                              static_cast<long long>(r.fp32_downlink_bytes));
                               }
                             });
  std::vector<std::unique_ptr<SimAgent>> agents;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string id = "agent-" + std::to_string(i);
    ASSIGN_OR_RETURN(std::unique_ptr<FederatedModel> model, FederatedModel::Create(spec));
    agents.push_back(std::make_unique<SimAgent>(network.Connect(id), id, std::move(model),
                                                Subset(train, at::tensor(parts[i], at::kLong))));
  }
  absl::Time now = absl::FromUnixSeconds(1);
  while (!service.done()) {
    now += absl::Milliseconds(100);
    for (auto& a : agents) RETURN_IF_ERROR(a->Step(now));
    for (int k = 0; k < 20 * static_cast<int>(agents.size()); ++k) {
      RETURN_IF_ERROR(service.Step(now, absl::ZeroDuration()));
    }
  }
  RETURN_IF_ERROR(net->ImportShards(service.model().shards));
  ASSIGN_OR_RETURN(result.accuracy, net->Evaluate(test, 500));
  const ModelSize size = net->Size();
  if (spec.family == ModelFamily::kBinary) {
    RETURN_IF_ERROR(net->Initialize(Subset(train, at::randperm(train.size()).narrow(0, 0, 500)), 0));
    ASSIGN_OR_RETURN(result.restat_accuracy, net->Evaluate(test, 500));
  }
  result.weight_bits = size.mean_weight_bits;
  result.act_bits = size.mean_activation_bits;
  result.joint_bits = size.mean_bits();
  result.model_kb = size.total_kb();
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

// The central reference on `samples` samples of `train`.
absl::StatusOr<double> RunCentral(const ModelSpec& spec, const Dataset& train, const Dataset& test,
                                  int64_t samples, uint64_t seed) {
  const int batch = absl::GetFlag(FLAGS_batch);
  if (spec.family == ModelFamily::kBinary) {
    StandardOptions options;
    options.learning_rate = absl::GetFlag(FLAGS_lr);
    options.seed = seed;
    StandardNet central(spec.binary, options);
    TrainOptions train_options;
    train_options.batch_size = batch;
    train_options.seed = seed;
    train_options.max_steps = samples / batch;
    ASSIGN_OR_RETURN(train_options.lr_schedule, ParseLrSchedule(absl::GetFlag(FLAGS_lr_schedule)));
    train_options.learning_rate = options.learning_rate;
    train_options.epochs = static_cast<int>(samples / std::max<int64_t>(1, train.size())) + 1;
    RETURN_IF_ERROR(Train(central, train, train_options, [](const EpochProgress& p) {
                      PrintProgress("central", p);
                    }).status());
    return Evaluate(central, test, 500);
  }
  QuantNetOptions float_options;
  float_options.quantize = false;
  float_options.seed = seed;
  QuantNet central(spec.quant, float_options);
  PhaseConfig config;
  config.phase = Phase::kPretrain;
  config.steps = samples / batch;
  config.batch_size = batch;
  config.seed = seed;
  config.learning_rate = absl::GetFlag(FLAGS_lr);
  ASSIGN_OR_RETURN(config.lr_schedule, ParseLrSchedule(absl::GetFlag(FLAGS_lr_schedule)));
  RETURN_IF_ERROR(RunPhase(central, train, config).status());
  return EvaluateQuant(central, test);
}

template <typename F>
MeanSd Over(const std::vector<FedResult>& runs, F field) {
  std::vector<double> values;
  for (const FedResult& r : runs) values.push_back(field(r));
  return Summarize(values);
}

absl::Status Run() {
  CountingCpuAllocator::Install();
  if (absl::GetFlag(FLAGS_eval_every) < 1) return absl::InvalidArgumentError("--eval_every must be >= 1");
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  ASSIGN_OR_RETURN(ModelSpec model, MakeModelSpec(absl::GetFlag(FLAGS_arch), std::nullopt));
  ASSIGN_OR_RETURN(model.quant.accounting, ParseSizeAccounting(absl::GetFlag(FLAGS_accounting)));
  ASSIGN_OR_RETURN(const int pad, FashionMnistPadding(model));
  ASSIGN_OR_RETURN(const Dataset train, LoadFashionMnist(kFashionMnistDir, DataSplit::kTrain,
                                                         {absl::GetFlag(FLAGS_train_samples), pad}));
  ASSIGN_OR_RETURN(const Dataset test, LoadFashionMnist(kFashionMnistDir, DataSplit::kTest,
                                                        {absl::GetFlag(FLAGS_test_samples), pad}));
  const bool binary = model.family == ModelFamily::kBinary;
  const int seeds = absl::GetFlag(FLAGS_seeds) > 0 ? absl::GetFlag(FLAGS_seeds) : binary ? 1 : 3;
  const int first_seed = absl::GetFlag(FLAGS_first_seed);
  if (seeds > 20 || absl::GetFlag(FLAGS_quantizer_every) < 1 || first_seed < 1 ||
      first_seed > 1000) {
    return absl::InvalidArgumentError(
        "--seeds at most 20, --quantizer_every at least 1, --first_seed in [1, 1000]");
  }
  for (const double bits : {absl::GetFlag(FLAGS_budget_bits), ActivationBudgetBits()}) {
    if (!(bits >= 1 && bits <= 8)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--budget_bits and --activation_budget_bits must lie in [1, 8], not ", bits));
    }
  }
  ASSIGN_OR_RETURN(const LrSchedule lr_schedule, ParseLrSchedule(absl::GetFlag(FLAGS_lr_schedule)));
  PartitionSpec spec;
  spec.alpha = absl::GetFlag(FLAGS_alpha);
  spec.agents = absl::GetFlag(FLAGS_agents);
  const at::Tensor labels = train.labels.contiguous();
  std::vector<int> label_list(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.numel());

  const bool q8 = absl::GetFlag(FLAGS_downlink) == "mixed-q8";
  if (!q8 && absl::GetFlag(FLAGS_downlink) != "mixed") {
    return absl::InvalidArgumentError("--downlink: mixed or mixed-q8");
  }
  const std::string uplink = absl::GetFlag(FLAGS_uplink);
  if (uplink != "sign-ef" && uplink != "fp32") return absl::InvalidArgumentError("--uplink: sign-ef or fp32");
  std::vector<FedConfig> configs = {{uplink + (q8 ? " up, mixed-q8 down" : " up, mixed down"),
                                     uplink == "fp32" ? Codec::kFp32 : Codec::kSignEf, true, q8}};
  if (absl::GetFlag(FLAGS_compare_downlink)) {
    configs.push_back({"sign-ef up, fp16 down", Codec::kSignEf, false});
  }
  if (!binary && absl::GetFlag(FLAGS_compare_uplink)) {
    configs.push_back({"fp32 up, mixed down", Codec::kFp32, true});
  }
  // runs[c][k]: configuration c, seed first_seed + k.
  std::vector<std::vector<FedResult>> runs(configs.size());
  std::vector<double> central;
  const std::string central_name = binary ? "central, standard float trainer" : "central float";
  double central_s = 0;
  int64_t samples = 0;
  for (int k = 0; k < seeds; ++k) {
    const uint64_t seed = static_cast<uint64_t>(first_seed + k);
    spec.seed = seed;
    ASSIGN_OR_RETURN(const auto parts, Partition(label_list, 10, spec));
    for (size_t c = 0; c < configs.size(); ++c) {
      std::fprintf(stderr, "federated %s: %s, seed %llu (%d of %d)\n", model.name.c_str(),
                   configs[c].label.c_str(), static_cast<unsigned long long>(seed), k + 1, seeds);
      ASSIGN_OR_RETURN(FedResult r, RunFederated(model, train, parts, test, configs[c], seed));
      runs[c].push_back(std::move(r));
    }
    // Central: the same network on the union of the agents' data, for as
    // many samples as the federation processed.
    samples = int64_t{runs[0].back().rounds} * spec.agents * absl::GetFlag(FLAGS_local_steps) *
              absl::GetFlag(FLAGS_batch);
    if (absl::GetFlag(FLAGS_central)) {
      std::fprintf(stderr, "%s, %lld samples, seed %llu\n", central_name.c_str(),
                   static_cast<long long>(samples), static_cast<unsigned long long>(seed));
      const auto start = std::chrono::steady_clock::now();
      ASSIGN_OR_RETURN(const double acc, RunCentral(model, train, test, samples, seed));
      central.push_back(acc);
      central_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
  }
  const std::vector<FedResult>& main_runs = runs[0];
  const int total_rounds = main_runs[0].rounds;
  const MeanSd central_acc = central.empty() ? MeanSd{-1, 0} : Summarize(central);
  auto accuracy = [](const FedResult& r) { return r.accuracy; };

  std::printf("\n%s, Fashion-MNIST, %d agents (%.0f%% train only the head), Dirichlet %.2f, "
              "%d rounds x %d steps x %d, lr %g (%s), %s server optimizer; %d seed(s): mean +- "
              "sd\n",
              model.name.c_str(), spec.agents, 100 * absl::GetFlag(FLAGS_head_only), spec.alpha,
              total_rounds, absl::GetFlag(FLAGS_local_steps), absl::GetFlag(FLAGS_batch),
              absl::GetFlag(FLAGS_lr), LrScheduleName(lr_schedule),
              absl::GetFlag(FLAGS_server_optimizer).c_str(), seeds);
  if (!binary) {
    std::printf("%s accounting, %s penalty, quantizers updated every %d step(s)\n",
                SizeAccountingName(model.quant.accounting), absl::GetFlag(FLAGS_penalty).c_str(),
                absl::GetFlag(FLAGS_quantizer_every));
  }
  std::printf("\n%-34s %16s %7s %7s %10s %14s %8s %16s %8s %9s\n", "run", "test acc", "w bits",
              "a bits", "model kB", "uplink bytes", "vs fp32", "downlink B/round", "vs fp32",
              "seconds");
  if (central_acc.mean >= 0) {
    std::printf("%-34s %8.2f+-%-5.2f%% %7s %7s %10s %14s %8s %16s %8s %9.0f\n",
                central_name.c_str(), 100 * central_acc.mean, 100 * central_acc.sd, "32", "32",
                "-", "-", "-", "-", "-", central_s);
  }
  auto ratio = [](double reference, double bytes) { return reference / std::max(1.0, bytes); };
  for (size_t c = 0; c < configs.size(); ++c) {
    const std::vector<FedResult>& rs = runs[c];
    const MeanSd acc = Over(rs, accuracy);
    const double up = Over(rs, [](const FedResult& r) { return double(r.uplink_bytes); }).mean;
    const double up32 = Over(rs, [](const FedResult& r) { return double(r.fp32_uplink_bytes); }).mean;
    const double down = Over(rs, [](const FedResult& r) { return double(r.downlink_bytes); }).mean;
    const double down32 =
        Over(rs, [](const FedResult& r) { return double(r.fp32_downlink_bytes); }).mean;
    std::printf("%-34s %8.2f+-%-5.2f%% %7.2f %7.2f %10.1f %14.0f %7.1fx %16.0f %7.1fx %9.0f\n",
                ("federated, " + configs[c].label).c_str(), 100 * acc.mean, 100 * acc.sd,
                Over(rs, [](const FedResult& r) { return r.weight_bits; }).mean,
                Over(rs, [](const FedResult& r) { return r.act_bits; }).mean,
                Over(rs, [](const FedResult& r) { return r.model_kb; }).mean, up, ratio(up32, up),
                down / std::max(1, total_rounds), ratio(down32, down),
                Over(rs, [](const FedResult& r) { return r.seconds; }).mean * rs.size());
  }
  auto sum = [](const std::vector<FedResult>& rs, int64_t FedResult::*field) {
    double total = 0;
    for (const FedResult& r : rs) total += static_cast<double>(r.*field);
    return total;
  };
  const double up_ratio = ratio(sum(main_runs, &FedResult::fp32_uplink_bytes),
                                sum(main_runs, &FedResult::uplink_bytes));
  const double down_ratio = ratio(sum(main_runs, &FedResult::fp32_downlink_bytes),
                                  sum(main_runs, &FedResult::downlink_bytes));
  for (size_t c = 0; c < configs.size(); ++c) {
    const MeanSd restat = Over(runs[c], [](const FedResult& r) { return r.restat_accuracy; });
    if (restat.mean >= 0 && binary) {
      std::printf("federated, %s: %.2f%% with the norms' statistics measured again on 500 "
                  "training samples under the final weights\n",
                  configs[c].label.c_str(), 100 * restat.mean);
    }
  }
  const MeanSd main_acc = Over(main_runs, accuracy);
  std::printf("\nuplink: %.1fx fewer bytes than fp32 updates (target >= 16x)\n", up_ratio);
  std::printf("downlink per round: %.1fx fewer bytes than fp32 shards (target >= 4x with half the "
              "agents training only the head)\n", down_ratio);
  if (configs.size() > 1 && !configs[1].mixed_downlink) {
    std::printf("mixed vs all-fp16 downlink: accuracy %+.2f pp\n",
                100 * (main_acc.mean - Over(runs[1], accuracy).mean));
  }
  for (size_t c = 0; c < configs.size(); ++c) {
    if (configs[c].uplink == Codec::kFp32 && c > 0) {
      std::printf("sign-ef vs fp32 uplink: accuracy %+.2f pp (target >= -1 pp)\n",
                  100 * (main_acc.mean - Over(runs[c], accuracy).mean));
    }
  }
  if (central_acc.mean >= 0) {
    std::printf("federated vs %s: %+.2f pp (target within 2 pp)\n", central_name.c_str(),
                100 * (main_acc.mean - central_acc.mean));
  }
  const MeanSd wbits = Over(main_runs, [](const FedResult& r) { return r.weight_bits; });
  const MeanSd abits = Over(main_runs, [](const FedResult& r) { return r.act_bits; });
  const MeanSd joint = Over(main_runs, [](const FedResult& r) { return r.joint_bits; });
  if (!binary) {
    std::printf(">= 90%% at <= 2 average bits: %.2f +- %.2f%% at %.2f weight / %.2f activation "
                "bits, %.2f over weights and activations together (budgets %.2f / %.2f)\n",
                100 * main_acc.mean, 100 * main_acc.sd, wbits.mean, abits.mean, joint.mean,
                absl::GetFlag(FLAGS_budget_bits), ActivationBudgetBits());
  }
  const std::string dir = absl::GetFlag(FLAGS_out_dir);
  RETURN_IF_ERROR(CreateDirectories(dir));
  const std::string stem = dir + "/federated_accuracy_bench" + (binary ? "_" + model.name : "");
  std::ofstream(stem + ".json") << absl::StrFormat(
      "{\"arch\": \"%s\", \"seeds\": %d, \"central_accuracy\": %.4f, \"central_accuracy_sd\": %.4f, "
      "\"federated_accuracy\": %.4f, \"federated_accuracy_sd\": %.4f, "
      "\"weight_bits\": %.3f, \"activation_bits\": %.3f, \"joint_bits\": %.3f, "
      "\"uplink_ratio_vs_fp32\": %.2f, "
      "\"downlink_ratio_vs_fp32\": %.2f, \"uplink_bytes\": %.0f, \"downlink_bytes_per_round\": %.0f, "
      "\"second_run_accuracy\": %.4f}\n",
      model.name, seeds, central_acc.mean, central_acc.sd, main_acc.mean, main_acc.sd, wbits.mean,
      abits.mean, joint.mean, up_ratio, down_ratio, sum(main_runs, &FedResult::uplink_bytes) / seeds,
      sum(main_runs, &FedResult::downlink_bytes) / seeds / std::max(1, total_rounds),
      runs.size() > 1 ? Over(runs[1], accuracy).mean : -1.0);
  std::vector<PlotSeries> series;
  for (size_t c = 0; c < configs.size(); ++c) {
    PlotSeries p{"federated " + configs[c].label};
    for (size_t i = 0; i < runs[c][0].accuracy_per_round.size(); ++i) {
      const MeanSd st = Over(runs[c], [i](const FedResult& r) {
        return i < r.accuracy_per_round.size() ? r.accuracy_per_round[i] : 0.0;
      });
      p.x.push_back(runs[c][0].evaluated_rounds[i]);
      p.y.push_back(100 * st.mean);
      p.y_err.push_back(100 * st.sd);
    }
    series.push_back(p);
  }
  if (central_acc.mean >= 0) {
    PlotSeries c{central_name + " (final)", {1.0, static_cast<double>(total_rounds)},
                 {100 * central_acc.mean, 100 * central_acc.mean}};
    series.push_back(c);
  }
  PlotOptions plot{"Federated " + model.name + " on Fashion-MNIST: test accuracy per round" +
                       (seeds > 1 ? " (mean +- sd over seeds)" : ""),
                   "round", "test accuracy (%)"};
  std::ofstream(stem + ".svg") << RenderSvgPlot(series, plot);
  std::printf("wrote %s.json and %s.svg\n", stem.c_str(), stem.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = fedge::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "federated_accuracy_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
