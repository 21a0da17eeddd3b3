// Benchmark: the federated run against the same network trained centrally in
// float, on the same data and the same number of samples, in one process.
// Federated runs use the real coordinator service, agent sessions and task
// runners over the in-memory transport (training is real; only the network
// is simulated). Reports the design's figures (section 5): test accuracy and
// average bits of the federated mixed-precision model, its gap to central
// float, and the uplink bytes of sign-ef against fp32 FedAvg with the
// accuracy each reaches.
//
//   bazel run -c opt //tests:federated_accuracy_bench -- --out_dir=$PWD/bench_results

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "common/io/file_util.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/transport/testing/in_memory_transport.h"
#include "common/status/status_macros.h"
#include "common/io/svg_plot.h"
#include "coordinator/service.h"
#include "device_agent/agent_loop.h"
#include "device_agent/task_executor.h"
#include "device_agent/task_runner.h"
#include "models/memory/counting_allocator.h"
#include "models/quant/model_shards.h"
#include "models/data/partition.h"
#include "models/quant/phase_trainer.h"

ABSL_FLAG(int, agents, 10, "simulated agents");
ABSL_FLAG(double, alpha, 0.5, "Dirichlet concentration of the non-IID split");
ABSL_FLAG(int64_t, train_samples, 60000, "training samples shared by the agents");
ABSL_FLAG(int64_t, test_samples, 10000, "test samples");
ABSL_FLAG(std::string, schedule, "3,6,3", "rounds of pretrain, learn precision, finetune");
ABSL_FLAG(int, local_steps, 60, "steps per task");
ABSL_FLAG(int, batch, 64, "batch size");
ABSL_FLAG(double, budget_bits, 2.0, "average bits of the size budget");
ABSL_FLAG(int, threads, 2, "intra-op threads");
ABSL_FLAG(std::string, out_dir, "bench_results", "where JSON goes");

namespace fedge {
namespace {

struct FedResult {
  double accuracy = 0;
  double weight_bits = 0, act_bits = 0, model_kb = 0;
  int64_t uplink_bytes = 0;
  double seconds = 0;
  std::vector<double> accuracy_per_round;
};

// An agent: the real agent loop, training each task inline with the real
// task runner.
class SimAgent {
 public:
  SimAgent(std::unique_ptr<Transport> transport, const std::string& id, const QuantArch& arch,
           Dataset data)
      : link_(std::move(transport)),
        runner_(arch, std::move(data), TaskRunnerOptions()),
        executor_([this](const Task& task) { return runner_.Run(task); }),
        loop_(link_.get(), &executor_, Options(id, runner_.samples())) {}

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

absl::StatusOr<FedResult> RunFederated(const QuantArch& arch, const Dataset& train,
                                       const std::vector<std::vector<int64_t>>& parts,
                                       const Dataset& test, Codec uplink) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<int> rounds;
  for (absl::string_view r : absl::StrSplit(absl::GetFlag(FLAGS_schedule), ',')) {
    int v = 0;
    if (!absl::SimpleAtoi(r, &v) || v < 1) return absl::InvalidArgumentError("bad --schedule");
    rounds.push_back(v);
  }
  if (rounds.size() != 3) return absl::InvalidArgumentError("--schedule needs three numbers");
  ServiceOptions options;
  options.run.schedule = {{Phase::kPretrain, rounds[0]},
                          {Phase::kLearnPrecision, rounds[1]},
                          {Phase::kFinetune, rounds[2]}};
  options.run.min_agents = static_cast<int>(parts.size());
  options.run.deadline = absl::Hours(1);
  options.run.hyper.local_steps = absl::GetFlag(FLAGS_local_steps);
  options.run.hyper.batch_size = absl::GetFlag(FLAGS_batch);
  options.run.hyper.weight_budget_kb =
      static_cast<float>(absl::GetFlag(FLAGS_budget_bits) * arch.weight_count() / 8000.0);
  options.run.hyper.activation_budget_kb =
      static_cast<float>(absl::GetFlag(FLAGS_budget_bits) * arch.activation_elements() / 8000.0);
  options.run.uplink = uplink;
  options.downlink = Codec::kFp32;
  options.log = false;

  QuantNet net(arch, QuantNetOptions());
  net.Calibrate(train.Range(0, 256), 8);
  ModelState initial;
  initial.shards = ExportShards(net.Named());

  InMemoryNetwork network;
  std::unique_ptr<Transport> server = network.Bind();
  FedResult result;
  CoordinatorService service(options, initial, 0, server.get(),
                             [&](const RoundReport& r, const ModelState& model) {
                               result.uplink_bytes += r.summary.uplink_bytes;
                               if (ImportShards(net.Named(), model.shards).ok()) {
                                 const double acc = EvaluateQuant(net, test).value_or(0);
                                 result.accuracy_per_round.push_back(acc);
                                 std::fprintf(stderr, "  [%s] round %llu %-15s acc %.2f%%\n",
                                              CodecName(uplink),
                                              static_cast<unsigned long long>(r.summary.round),
                                              PhaseName(r.summary.phase), 100 * acc);
                               }
                             });
  std::vector<std::unique_ptr<SimAgent>> agents;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string id = "agent-" + std::to_string(i);
    agents.push_back(std::make_unique<SimAgent>(network.Connect(id), id, arch,
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
  RETURN_IF_ERROR(ImportShards(net.Named(), service.model().shards));
  ASSIGN_OR_RETURN(result.accuracy, EvaluateQuant(net, test));
  const SizeReport size = net.Size();
  result.weight_bits = size.mean_weight_bits;
  result.act_bits = size.mean_activation_bits;
  result.model_kb = size.total_kb();
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

absl::Status Run() {
  CountingCpuAllocator::Install();
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  ASSIGN_OR_RETURN(const QuantArch arch, MakeQuantArch("fmnist-cnn"));
  ASSIGN_OR_RETURN(const Dataset train, LoadFashionMnist(kFashionMnistDir, DataSplit::kTrain,
                                                         {absl::GetFlag(FLAGS_train_samples), 0}));
  ASSIGN_OR_RETURN(const Dataset test, LoadFashionMnist(kFashionMnistDir, DataSplit::kTest,
                                                        {absl::GetFlag(FLAGS_test_samples), 0}));
  PartitionSpec spec;
  spec.alpha = absl::GetFlag(FLAGS_alpha);
  spec.agents = absl::GetFlag(FLAGS_agents);
  const at::Tensor labels = train.labels.contiguous();
  std::vector<int> label_list(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.numel());
  ASSIGN_OR_RETURN(const auto parts, Partition(label_list, 10, spec));

  std::fprintf(stderr, "federated, sign-ef uplink\n");
  ASSIGN_OR_RETURN(const FedResult sign, RunFederated(arch, train, parts, test, Codec::kSignEf));
  std::fprintf(stderr, "federated, fp32 uplink (FedAvg reference)\n");
  ASSIGN_OR_RETURN(const FedResult fp32, RunFederated(arch, train, parts, test, Codec::kFp32));

  // Central float: the same layers without quantizers, on the union of the
  // agents' data, for as many samples as the federation processed.
  const int total_rounds = static_cast<int>(sign.accuracy_per_round.size());
  const int64_t samples = int64_t{total_rounds} * spec.agents * absl::GetFlag(FLAGS_local_steps) *
                          absl::GetFlag(FLAGS_batch);
  std::fprintf(stderr, "central float, %lld samples\n", static_cast<long long>(samples));
  const auto start = std::chrono::steady_clock::now();
  QuantNetOptions float_options;
  float_options.quantize = false;
  QuantNet central(arch, float_options);
  PhaseConfig config;
  config.phase = Phase::kPretrain;
  config.steps = samples / absl::GetFlag(FLAGS_batch);
  config.batch_size = absl::GetFlag(FLAGS_batch);
  RETURN_IF_ERROR(RunPhase(central, train, config).status());
  ASSIGN_OR_RETURN(const double central_acc, EvaluateQuant(central, test));
  const double central_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf("\nfmnist-cnn, Fashion-MNIST, %d agents, Dirichlet %.2f, %d rounds x %d steps x %d\n\n",
              spec.agents, spec.alpha, total_rounds, absl::GetFlag(FLAGS_local_steps),
              absl::GetFlag(FLAGS_batch));
  std::printf("%-26s %9s %7s %7s %10s %14s %9s\n", "run", "test acc", "w bits", "a bits",
              "model kB", "uplink bytes", "seconds");
  std::printf("%-26s %8.2f%% %7s %7s %10s %14s %9.0f\n", "central float", 100 * central_acc,
              "32", "32", "-", "-", central_s);
  for (const auto& [name, r] : {std::pair<const char*, const FedResult&>{"federated, fp32 uplink", fp32},
                                std::pair<const char*, const FedResult&>{"federated, sign-ef uplink", sign}}) {
    std::printf("%-26s %8.2f%% %7.2f %7.2f %10.1f %14lld %9.0f\n", name, 100 * r.accuracy,
                r.weight_bits, r.act_bits, r.model_kb, static_cast<long long>(r.uplink_bytes),
                r.seconds);
  }
  const double bits = (sign.weight_bits + sign.act_bits) / 2;
  const double ratio = static_cast<double>(fp32.uplink_bytes) / std::max<int64_t>(1, sign.uplink_bytes);
  std::printf("\nsign-ef vs fp32 uplink: %.1fx fewer bytes, accuracy %+.2f pp (target >= 16x, >= -1 pp)\n",
              ratio, 100 * (sign.accuracy - fp32.accuracy));
  std::printf("federated vs central float: %+.2f pp (target within 2 pp; >= 90%% at <= 2 average bits: "
              "%.2f%% at %.2f weight / %.2f activation bits)\n",
              100 * (sign.accuracy - central_acc), 100 * sign.accuracy, sign.weight_bits, sign.act_bits);
  const std::string dir = absl::GetFlag(FLAGS_out_dir);
  RETURN_IF_ERROR(CreateDirectories(dir));
  std::ofstream(dir + "/federated_accuracy_bench.json") << absl::StrFormat(
      "{\"central_float_accuracy\": %.4f, \"federated_sign_ef_accuracy\": %.4f, "
      "\"federated_fp32_accuracy\": %.4f, \"sign_ef_weight_bits\": %.3f, "
      "\"sign_ef_activation_bits\": %.3f, \"mean_bits\": %.3f, \"uplink_ratio_fp32_over_sign_ef\": %.2f, "
      "\"sign_ef_uplink_bytes\": %d, \"fp32_uplink_bytes\": %d}\n",
      central_acc, sign.accuracy, fp32.accuracy, sign.weight_bits, sign.act_bits, bits, ratio,
      sign.uplink_bytes, fp32.uplink_bytes);
  PlotSeries a{"federated sign-ef"}, b{"federated fp32"};
  for (size_t i = 0; i < sign.accuracy_per_round.size(); ++i) {
    a.x.push_back(i + 1);
    a.y.push_back(100 * sign.accuracy_per_round[i]);
  }
  for (size_t i = 0; i < fp32.accuracy_per_round.size(); ++i) {
    b.x.push_back(i + 1);
    b.y.push_back(100 * fp32.accuracy_per_round[i]);
  }
  PlotSeries c{"central float (final)", {1.0, static_cast<double>(total_rounds)},
               {100 * central_acc, 100 * central_acc}};
  PlotOptions plot{"Federated Fashion-MNIST: test accuracy per round", "round", "test accuracy (%)"};
  std::ofstream(dir + "/federated_accuracy.svg") << RenderSvgPlot({a, b, c}, plot);
  std::printf("wrote %s/federated_accuracy_bench.json and federated_accuracy.svg\n", dir.c_str());
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
