// Benchmark: where a training process's memory goes. Each measurement runs
// in its own process (this binary again, with --mode), so every peak RSS is
// a whole process's:
//   baseline  the libraries loaded and LibTorch started, nothing else
//   agent     the agent's task runner training CNV with memory-saving
//             backprop (models/family), data held as uint8
//   standard  the standard LibTorch float32 trainer (models/bnn/standard_net.h)
//             on the same data, held as float32 as such a trainer holds it
// and the table breaks each peak down into baseline, data, model state,
// training (the counting allocator's peak during the steps) and other.
//
//   bazel run -c opt //tests:agent_memory_bench -- --steps=50

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/codec/update_codec.h"
#include "common/env/process_memory.h"
#include "common/status/status_macros.h"
#include "device_agent/task_runner.h"
#include "models/bnn/standard_net.h"
#include "models/bnn/trainer.h"
#include "models/data/dataset.h"
#include "models/family/federated_model.h"
#include "models/memory/counting_allocator.h"

ABSL_FLAG(std::string, mode, "", "internal: baseline, agent or standard");
ABSL_FLAG(std::string, arch, "cnv", "binary network");
ABSL_FLAG(int64_t, train_samples, 20000, "Fashion-MNIST training samples held");
ABSL_FLAG(int, batch, 100, "batch size");
ABSL_FLAG(int, steps, 50, "training steps");
ABSL_FLAG(int, threads, 2, "intra-op threads");
ABSL_FLAG(bool, tune_allocator, true,
          "internal: TuneAllocatorForSmallFootprint in this process (as the agent binary does)");

namespace fedge {
namespace {

struct Figures {
  int64_t peak_rss = 0, data = 0, model_state = 0, training = 0;
};

void Print(const Figures& f) {
  std::printf("%lld %lld %lld %lld\n", static_cast<long long>(f.peak_rss),
              static_cast<long long>(f.data), static_cast<long long>(f.model_state),
              static_cast<long long>(f.training));
}

absl::StatusOr<Dataset> Data(const ModelSpec& spec) {
  ASSIGN_OR_RETURN(const int pad, FashionMnistPadding(spec));
  return LoadFashionMnist(kFashionMnistDir, DataSplit::kTrain,
                          {absl::GetFlag(FLAGS_train_samples), pad});
}

absl::Status Agent(const ModelSpec& spec) {
  ASSIGN_OR_RETURN(Dataset data, Data(spec));
  Figures f;
  f.data = data.bytes();
  ASSIGN_OR_RETURN(std::unique_ptr<FederatedModel> model, FederatedModel::Create(spec));
  Task task;
  task.round_id = task.task_id = 1;
  task.hyper.batch_size = static_cast<uint32_t>(absl::GetFlag(FLAGS_batch));
  task.hyper.local_steps = static_cast<uint32_t>(absl::GetFlag(FLAGS_steps));
  task.hyper.learning_rate = 1e-3f;
  task.uplink_codec = Codec::kSignEf;
  for (const ModelShard& s : model->ExportShards()) {
    WireTensor t;
    t.layer = static_cast<uint32_t>(s.layer);
    t.name = s.name;
    t.shape = s.shape;
    RETURN_IF_ERROR(EncodeUpdate(s.values, {Codec::kFp16, 0, 1}, 0, nullptr, &t));
    task.shards.push_back(std::move(t));
  }
  // 16-bit latent weights and two 16-bit Adam moments.
  f.model_state = 6 * spec.binary.weight_count();
  TaskRunner runner(std::move(model), std::move(data), Dataset(), TaskRunnerOptions());
  ASSIGN_OR_RETURN(const TaskResult result, runner.Run(task));
  f.peak_rss = static_cast<int64_t>(result.process_peak_rss_bytes);
  f.training = static_cast<int64_t>(result.peak_memory_bytes);
  Print(f);
  return absl::OkStatus();
}

absl::Status Standard(const ModelSpec& spec) {
  ASSIGN_OR_RETURN(Dataset data, Data(spec));
  // A float trainer's data set: float32 images.
  data.images = data.Range(0, data.size());
  Figures f;
  f.data = data.bytes();
  StandardNet net(spec.binary, StandardOptions());
  f.model_state = net.StateBytes(StateKind::kWeights) + net.StateBytes(StateKind::kOptimizer);
  ResetPeakRss();
  TrainOptions options;
  options.batch_size = absl::GetFlag(FLAGS_batch);
  options.max_steps = absl::GetFlag(FLAGS_steps);
  ASSIGN_OR_RETURN(const TrainReport report, Train(net, data, options));
  f.peak_rss = PeakRssBytes();
  f.training = report.step_peak_bytes;
  Print(f);
  return absl::OkStatus();
}

// Runs this binary in `mode` and reads its figures.
absl::StatusOr<Figures> Child(const std::string& self, const std::string& mode, bool tune) {
  const std::string command = absl::StrCat(
      self, " --mode=", mode, " --arch=", absl::GetFlag(FLAGS_arch),
      " --train_samples=", absl::GetFlag(FLAGS_train_samples), " --batch=", absl::GetFlag(FLAGS_batch),
      " --steps=", absl::GetFlag(FLAGS_steps), " --threads=", absl::GetFlag(FLAGS_threads),
      " --tune_allocator=", tune ? "true" : "false");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("cannot run " + command);
  char line[256] = {};
  const bool got = std::fgets(line, sizeof(line), pipe) != nullptr;
  const int status = pclose(pipe);
  std::vector<std::string> fields = absl::StrSplit(std::string(got ? line : ""), ' ');
  Figures f;
  if (status != 0 || fields.size() != 4 || !absl::SimpleAtoi(fields[0], &f.peak_rss) ||
      !absl::SimpleAtoi(fields[1], &f.data) || !absl::SimpleAtoi(fields[2], &f.model_state) ||
      !absl::SimpleAtoi(absl::StripAsciiWhitespace(fields[3]), &f.training)) {
    return absl::InternalError(absl::StrCat("mode ", mode, " failed (status ", status, ")"));
  }
  return f;
}

absl::Status Run(const std::string& self) {
  CountingCpuAllocator::Install();
  if (absl::GetFlag(FLAGS_tune_allocator)) TuneAllocatorForSmallFootprint();
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  ASSIGN_OR_RETURN(const ModelSpec spec, MakeModelSpec(absl::GetFlag(FLAGS_arch), std::nullopt));
  if (spec.family != ModelFamily::kBinary) return absl::InvalidArgumentError("--arch: a binary network");
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "baseline") {
    (void)at::ones({4}).sum().item<float>();
    Print({PeakRssBytes(), 0, 0, 0});
    return absl::OkStatus();
  }
  if (mode == "agent") return Agent(spec);
  if (mode == "standard") return Standard(spec);
  if (!mode.empty()) return absl::InvalidArgumentError("--mode: baseline, agent or standard");

  ASSIGN_OR_RETURN(const Figures baseline, Child(self, "baseline", false));
  ASSIGN_OR_RETURN(const Figures agent, Child(self, "agent", true));
  ASSIGN_OR_RETURN(const Figures agent_stock, Child(self, "agent", false));
  ASSIGN_OR_RETURN(const Figures standard, Child(self, "standard", false));
  ASSIGN_OR_RETURN(const Figures standard_tuned, Child(self, "standard", true));
  auto mb = [](int64_t b) { return b / 1048576.0; };
  std::printf("\n%s, batch %d, %lld Fashion-MNIST samples, %d steps, %d threads; MiB\n\n",
              spec.name.c_str(), absl::GetFlag(FLAGS_batch),
              static_cast<long long>(absl::GetFlag(FLAGS_train_samples)), absl::GetFlag(FLAGS_steps),
              absl::GetFlag(FLAGS_threads));
  std::printf("%-44s %10s %9s %9s %9s %9s %9s\n", "process", "peak RSS", "baseline", "data",
              "model", "training", "other");
  const std::pair<const char*, Figures> rows[] = {
      {"agent (as deployed: allocator tuned)", agent},
      {"agent, glibc defaults", agent_stock},
      {"standard float32 trainer, glibc defaults", standard},
      {"standard float32 trainer, allocator tuned", standard_tuned}};
  for (const auto& [name, f] : rows) {
    std::printf("%-44s %10.1f %9.1f %9.1f %9.1f %9.1f %9.1f\n", name, mb(f.peak_rss),
                mb(baseline.peak_rss), mb(f.data), mb(f.model_state), mb(f.training),
                mb(f.peak_rss - baseline.peak_rss - f.data - f.model_state - f.training));
  }
  const double bound = baseline.peak_rss + 2.0 * agent.training + agent.data;
  std::printf("\nagent peak RSS %.2fx below the standard trainer's as it runs by default, %.2fx "
              "with the same allocator settings (target >= 2x)\n",
              static_cast<double>(standard.peak_rss) / agent.peak_rss,
              static_cast<double>(standard_tuned.peak_rss) / agent.peak_rss);
  std::printf("agent peak RSS %.1f MiB against baseline + 2 x training + uint8 data = %.1f MiB (%s)\n",
              mb(agent.peak_rss), bound / 1048576, agent.peak_rss <= bound ? "within" : "over");
  return absl::OkStatus();
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  char self[4096] = {};
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  const absl::Status status = fedge::Run(n > 0 ? std::string(self, n) : std::string(argv[0]));
  if (!status.ok()) {
    std::fprintf(stderr, "agent_memory_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
