// Benchmark: trains the same architecture on Fashion-MNIST with the
// memory-saving method and with standard float32 BNN training, in one run,
// and reports memory, speed and accuracy side by side with their ratios.
// Each method trains in its own child process so its peak resident memory
// is its own; a third child then times both trainers step by step,
// interleaved on the same batches (--speed_steps pairs), so that the
// machine's load falls on both alike: the speed-up is the median of the
// paired ratios, with forward, backward and optimizer times. Prints a table
// and writes JSON and CSV.
//
//   bazel run -c opt //models/tools:binary_train_bench -- --epochs=3

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/io/file_util.h"
#include "common/schedule/learning_rate.h"
#include "common/status/status_macros.h"
#include "models/bnn/binary_net.h"
#include "models/memory/counting_allocator.h"
#include "models/data/dataset.h"
#include "models/bnn/standard_net.h"
#include "models/bnn/trainer.h"
#include "models/kernels/binary_conv.h"

ABSL_FLAG(std::string, arch, "cnv", "architecture: mlp, cnv or binarynet");
ABSL_FLAG(int, epochs, 3, "training epochs for both methods");
ABSL_FLAG(int, batch, 100, "batch size");
ABSL_FLAG(int64_t, train_samples, 10000, "training samples (-1: all 60000)");
ABSL_FLAG(int64_t, test_samples, 10000, "test samples (-1: all 10000)");
ABSL_FLAG(double, lr, 1e-3, "both methods' Adam learning rate");
ABSL_FLAG(std::string, lr_schedule, "constant",
          "constant, or cosine: the rate decays over the run's steps");
ABSL_FLAG(int64_t, steps, 0,
          "train for this many steps, as many epochs as that takes (0: --epochs whole epochs)");
ABSL_FLAG(int64_t, reset_optimizer_every, 0,
          "a fresh optimizer every this many steps, as an agent starts one per task (0: never)");
ABSL_FLAG(int, seed, 1, "seed of both methods' initial weights and sample order (>= 1)");
ABSL_FLAG(int, threads, 2, "intra-op threads for both methods");
ABSL_FLAG(std::string, out_dir, "bench_results", "where JSON and CSV go");
ABSL_FLAG(std::string, data_dir, fedge::kFashionMnistDir, "Fashion-MNIST IDX files");
ABSL_FLAG(bool, half_weights, true, "memory-saving: float16 latent weights");
ABSL_FLAG(bool, sign_grads, true, "memory-saving: 1-bit weight gradients");
ABSL_FLAG(bool, sign_edge_grads, true,
          "memory-saving: 1-bit dW in the first and last weight layers too (false: float dW "
          "there)");
ABSL_FLAG(bool, half_state, true, "memory-saving: 16-bit Adam moments");
ABSL_FLAG(std::string, grad_x, "bf16", "memory-saving: activation gradients fp32, bf16, fp16 or pow2");
ABSL_FLAG(bool, bit_kernels, true,
          "memory-saving: bit-packed kernels (false: float convolutions on +-1 values and a "
          "float backward, the path before the kernels, for comparison)");
ABSL_FLAG(int, act_bits, 1, "memory-saving: bits of saved hidden activations (1-8)");
ABSL_FLAG(int, speed_steps, 20,
          "paired training steps timed with the two trainers interleaved (0: skip)");
ABSL_FLAG(std::string, method, "",
          "internal: train one method (or time both: speed) and write --result_file");
ABSL_FLAG(std::string, result_file, "", "internal: where a child writes its result");

namespace fedge {
namespace {

using Result = std::map<std::string, double>;

int64_t PeakRssBytes() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

absl::StatusOr<std::unique_ptr<TrainableNet>> MakeNet(const std::string& method,
                                                      const ArchSpec& arch,
                                                      MemoryLedger* ledger) {
  if (absl::GetFlag(FLAGS_seed) < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--seed=", absl::GetFlag(FLAGS_seed), " must be >= 1"));
  }
  if (!(absl::GetFlag(FLAGS_lr) > 0 && absl::GetFlag(FLAGS_lr) < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--lr=", absl::GetFlag(FLAGS_lr), " must lie in (0, 1)"));
  }
  const uint64_t seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  if (method == "standard") {
    StandardOptions standard;
    standard.seed = seed;
    standard.learning_rate = absl::GetFlag(FLAGS_lr);
    return std::make_unique<StandardNet>(arch, standard);
  }
  if (method != "memory-saving") {
    return absl::InvalidArgumentError(absl::StrCat("unknown --method=", method));
  }
  MemorySavingOptions saving;
  saving.seed = seed;
  saving.learning_rate = absl::GetFlag(FLAGS_lr);
  saving.half_latent_weights = absl::GetFlag(FLAGS_half_weights);
  saving.sign_weight_grads = absl::GetFlag(FLAGS_sign_grads);
  saving.sign_edge_weight_grads = absl::GetFlag(FLAGS_sign_edge_grads);
  saving.half_optimizer_state = absl::GetFlag(FLAGS_half_state);
  saving.act_bits = absl::GetFlag(FLAGS_act_bits);
  saving.bit_kernels = absl::GetFlag(FLAGS_bit_kernels);
  const std::string grad_x = absl::GetFlag(FLAGS_grad_x);
  if (grad_x == "fp32") {
    saving.grad_x = GradXPrecision::kFloat32;
  } else if (grad_x == "bf16") {
    saving.grad_x = GradXPrecision::kBFloat16;
  } else if (grad_x == "fp16") {
    saving.grad_x = GradXPrecision::kFloat16;
  } else if (grad_x == "pow2") {
    saving.grad_x = GradXPrecision::kPow2;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--grad_x=", grad_x, ": expected fp32, bf16, fp16 or pow2"));
  }
  if (saving.act_bits < 1 || saving.act_bits > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("--act_bits=", saving.act_bits, " must be in [1, 8]"));
  }
  return std::make_unique<MemorySavingNet>(arch, saving, ledger);
}

// Fashion-MNIST's samples of `split` (CNV's valid convolutions need 32x32:
// 28x28 padded by 2, except for the MLP).
absl::StatusOr<Dataset> LoadSplit(DataSplit split, int64_t samples) {
  const int pad = absl::GetFlag(FLAGS_arch) == "mlp" ? 0 : 32;
  return LoadFashionMnist(absl::GetFlag(FLAGS_data_dir), split, {samples, pad});
}

// --arch built for the images' shape.
absl::StatusOr<ArchSpec> ArchFor(const Dataset& data) {
  const InputShape input{static_cast<int>(data.images.size(1)),
                         static_cast<int>(data.images.size(2)),
                         static_cast<int>(data.images.size(3))};
  return MakeArch(absl::GetFlag(FLAGS_arch), input);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Both trainers in one process, one step each in turn on the same batch
// (which goes first alternates), so the machine's load changes hit both
// alike: the speed-up is the median over pairs of standard / ours.
absl::StatusOr<Result> TimeSteps() {
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  const int steps = absl::GetFlag(FLAGS_speed_steps), warmup = 2;
  const int batch = absl::GetFlag(FLAGS_batch);
  ASSIGN_OR_RETURN(const Dataset data,
                   LoadSplit(DataSplit::kTrain, int64_t{batch} * (steps + warmup)));
  ASSIGN_OR_RETURN(const ArchSpec arch, ArchFor(data));
  ASSIGN_OR_RETURN(std::unique_ptr<TrainableNet> standard, MakeNet("standard", arch, nullptr));
  ASSIGN_OR_RETURN(std::unique_ptr<TrainableNet> saving,
                   MakeNet("memory-saving", arch, nullptr));
  // Per trainer: forward, backward and optimizer milliseconds of each pair.
  std::vector<double> phase[2][3];
  auto step = [&](TrainableNet& net, const at::Tensor& x, const at::Tensor& y, int which,
                  bool keep) {
    using Clock = std::chrono::steady_clock;
    const auto ms = [](Clock::time_point a, Clock::time_point b) {
      return std::chrono::duration<double, std::milli>(b - a).count();
    };
    const auto t0 = Clock::now();
    const at::Tensor logits = net.Forward(x, /*training=*/true);
    const auto t1 = Clock::now();
    at::nll_loss(at::log_softmax(logits, 1), y).backward();
    const auto t2 = Clock::now();
    net.Step();
    const auto t3 = Clock::now();
    if (keep) {
      phase[which][0].push_back(ms(t0, t1));
      phase[which][1].push_back(ms(t1, t2));
      phase[which][2].push_back(ms(t2, t3));
    }
    return ms(t0, t3);
  };
  std::vector<double> standard_ms, saving_ms, ratios;
  try {
    for (int i = 0; i < steps + warmup; ++i) {
      const at::Tensor x = data.Range(int64_t{i} * batch, batch);
      const at::Tensor y = data.labels.narrow(0, int64_t{i} * batch, batch);
      double a, b;
      const bool keep = i >= warmup;
      if (i % 2 == 0) {
        a = step(*standard, x, y, 0, keep);
        b = step(*saving, x, y, 1, keep);
      } else {
        b = step(*saving, x, y, 1, keep);
        a = step(*standard, x, y, 0, keep);
      }
      if (i < warmup) continue;
      standard_ms.push_back(a);
      saving_ms.push_back(b);
      ratios.push_back(a / b);
      std::fprintf(stderr, "[speed] pair %d/%d  standard %.1f ms  memory-saving %.1f ms\n",
                   i - warmup + 1, steps, a, b);
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(e.what_without_backtrace());
  }
  Result r;
  r["standard_step_ms"] = Median(standard_ms);
  r["saving_step_ms"] = Median(saving_ms);
  r["step_speedup"] = Median(ratios);
  r["pairs"] = steps;
  const char* names[3] = {"forward", "backward", "optimizer"};
  for (int p = 0; p < 3; ++p) {
    r[absl::StrCat("standard_", names[p], "_ms")] = Median(phase[0][p]);
    r[absl::StrCat("saving_", names[p], "_ms")] = Median(phase[1][p]);
  }
  return r;
}

absl::StatusOr<Result> TrainOne(const std::string& method) {
  CountingCpuAllocator::Install();
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  ASSIGN_OR_RETURN(const Dataset train,
                   LoadSplit(DataSplit::kTrain, absl::GetFlag(FLAGS_train_samples)));
  ASSIGN_OR_RETURN(const Dataset test,
                   LoadSplit(DataSplit::kTest, absl::GetFlag(FLAGS_test_samples)));
  ASSIGN_OR_RETURN(const ArchSpec arch, ArchFor(train));
  const int64_t rss_before = PeakRssBytes();

  MemoryLedger ledger;
  ASSIGN_OR_RETURN(std::unique_ptr<TrainableNet> net, MakeNet(method, arch, &ledger));
  TrainOptions options;
  options.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  options.epochs = absl::GetFlag(FLAGS_epochs);
  options.batch_size = absl::GetFlag(FLAGS_batch);
  options.learning_rate = absl::GetFlag(FLAGS_lr);
  options.reset_optimizer_every = absl::GetFlag(FLAGS_reset_optimizer_every);
  if (options.reset_optimizer_every < 0) {
    return absl::InvalidArgumentError("--reset_optimizer_every must be >= 0");
  }
  ASSIGN_OR_RETURN(options.lr_schedule, ParseLrSchedule(absl::GetFlag(FLAGS_lr_schedule)));
  if (const int64_t steps = absl::GetFlag(FLAGS_steps); steps != 0) {
    if (steps < 0) return absl::InvalidArgumentError("--steps must be >= 0");
    const int64_t per_epoch = (train.size() + options.batch_size - 1) / options.batch_size;
    options.max_steps = steps;
    options.epochs = static_cast<int>((steps + per_epoch - 1) / per_epoch);
  }
  std::vector<double> epoch_speed;
  double last_elapsed = 0;
  int64_t last_samples = 0;
  ASSIGN_OR_RETURN(
      const TrainReport report,
      Train(*net, train, options, [&](const EpochProgress& p) {
        PrintProgress(method, p);
        // Per-epoch throughput from the cumulative figure.
        const double elapsed = p.epoch * train.size() / p.samples_per_second;
        epoch_speed.push_back((p.epoch * train.size() - last_samples) /
                              (elapsed - last_elapsed));
        last_elapsed = elapsed;
        last_samples = p.epoch * train.size();
      }));
  ASSIGN_OR_RETURN(const double accuracy, Evaluate(*net, test));
  std::sort(epoch_speed.begin(), epoch_speed.end());
  const int64_t state = net->StateBytes(StateKind::kWeights) +
                        net->StateBytes(StateKind::kWeightGrads) +
                        net->StateBytes(StateKind::kOptimizer);
  Result r;
  r["samples_per_second_median"] = epoch_speed[epoch_speed.size() / 2];
  r["test_accuracy"] = accuracy;
  r["train_loss"] = report.loss;
  r["held_for_backward_bytes"] = report.held_for_backward_bytes;
  r["state_bytes"] = state;
  r["training_memory_bytes"] = report.held_for_backward_bytes + state;
  r["step_peak_bytes"] = report.step_peak_bytes;
  r["ledger_saved_bytes"] = ledger.peak_saved_bytes();
  r["peak_rss_bytes"] = PeakRssBytes();
  r["peak_rss_training_bytes"] = PeakRssBytes() - rss_before;
  r["seconds"] = report.seconds;
  return r;
}

absl::Status WriteResult(const Result& r, const std::string& path) {
  std::ofstream out(path);
  for (const auto& [k, v] : r) out << k << " " << absl::StrFormat("%.17g", v) << "\n";
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<Result> ReadResult(const std::string& path) {
  std::ifstream in(path);
  Result r;
  std::string key;
  double value;
  while (in >> key >> value) r[key] = value;
  if (r.empty()) return absl::InternalError(absl::StrCat("no result in ", path));
  return r;
}

absl::StatusOr<Result> RunChild(const char* self, const std::string& method,
                                const std::string& out_dir) {
  const std::string file = absl::StrCat(out_dir, "/.", method, ".result");
  std::vector<std::string> args = {
      "binary_train_bench",
      absl::StrCat("--method=", method),
      absl::StrCat("--result_file=", file),
      absl::StrCat("--arch=", absl::GetFlag(FLAGS_arch)),
      absl::StrCat("--epochs=", absl::GetFlag(FLAGS_epochs)),
      absl::StrCat("--batch=", absl::GetFlag(FLAGS_batch)),
      absl::StrCat("--train_samples=", absl::GetFlag(FLAGS_train_samples)),
      absl::StrCat("--test_samples=", absl::GetFlag(FLAGS_test_samples)),
      absl::StrCat("--threads=", absl::GetFlag(FLAGS_threads)),
      absl::StrCat("--seed=", absl::GetFlag(FLAGS_seed)),
      absl::StrCat("--lr=", absl::GetFlag(FLAGS_lr)),
      absl::StrCat("--lr_schedule=", absl::GetFlag(FLAGS_lr_schedule)),
      absl::StrCat("--steps=", absl::GetFlag(FLAGS_steps)),
      absl::StrCat("--reset_optimizer_every=", absl::GetFlag(FLAGS_reset_optimizer_every)),
      absl::StrCat("--data_dir=", absl::GetFlag(FLAGS_data_dir)),
      absl::StrCat("--half_weights=", absl::GetFlag(FLAGS_half_weights)),
      absl::StrCat("--sign_grads=", absl::GetFlag(FLAGS_sign_grads)),
      absl::StrCat("--sign_edge_grads=", absl::GetFlag(FLAGS_sign_edge_grads)),
      absl::StrCat("--half_state=", absl::GetFlag(FLAGS_half_state)),
      absl::StrCat("--grad_x=", absl::GetFlag(FLAGS_grad_x)),
      absl::StrCat("--act_bits=", absl::GetFlag(FLAGS_act_bits)),
      absl::StrCat("--bit_kernels=", absl::GetFlag(FLAGS_bit_kernels)),
      absl::StrCat("--speed_steps=", absl::GetFlag(FLAGS_speed_steps))};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, self, nullptr, nullptr, argv.data(), environ) != 0) {
    return absl::InternalError(absl::StrCat("cannot start ", self));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(method, " run failed"));
  }
  return ReadResult(file);
}

absl::Status RunBoth(const char* self) {
  const int speed_steps = absl::GetFlag(FLAGS_speed_steps);
  if (speed_steps < 0 || speed_steps > 10000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--speed_steps=", speed_steps, " must be in [0, 10000]"));
  }
  const std::string out_dir = absl::GetFlag(FLAGS_out_dir);
  RETURN_IF_ERROR(CreateDirectories(out_dir));
  ASSIGN_OR_RETURN(const Result standard, RunChild(self, "standard", out_dir));
  ASSIGN_OR_RETURN(const Result saving, RunChild(self, "memory-saving", out_dir));
  Result speed;
  if (absl::GetFlag(FLAGS_speed_steps) > 0) {
    ASSIGN_OR_RETURN(speed, RunChild(self, "speed", out_dir));
  }

  struct Row {
    const char* label;
    const char* key;
    double scale;
    bool ratio_std_over_ours;
  };
  const Row rows[] = {
      {"training memory (MiB): held for backward + state", "training_memory_bytes", 1.0 / (1 << 20), true},
      {"  held for backward (MiB, allocator)", "held_for_backward_bytes", 1.0 / (1 << 20), true},
      {"  weights + dW + optimizer (MiB)", "state_bytes", 1.0 / (1 << 20), true},
      {"step peak incl. transients (MiB)", "step_peak_bytes", 1.0 / (1 << 20), true},
      {"peak RSS growth in training (MiB)", "peak_rss_training_bytes", 1.0 / (1 << 20), true},
      {"peak RSS of the process (MiB)", "peak_rss_bytes", 1.0 / (1 << 20), true},
      {"samples/s (median epoch)", "samples_per_second_median", 1.0, false},
      {"test accuracy (%)", "test_accuracy", 100.0, false},
  };
  std::printf("\n%s on Fashion-MNIST: %lld train / %lld test samples, %d epochs, batch %d, %d threads\n\n",
              absl::GetFlag(FLAGS_arch).c_str(),
              static_cast<long long>(absl::GetFlag(FLAGS_train_samples)),
              static_cast<long long>(absl::GetFlag(FLAGS_test_samples)),
              absl::GetFlag(FLAGS_epochs), absl::GetFlag(FLAGS_batch),
              absl::GetFlag(FLAGS_threads));
  std::printf("%-50s %12s %14s %10s\n", "figure", "standard", "this method", "ratio");
  std::ostringstream csv, json;
  csv << "figure,standard,memory_saving,ratio\n";
  json << "{\n  \"arch\": \"" << absl::GetFlag(FLAGS_arch) << "\",\n  \"epochs\": "
       << absl::GetFlag(FLAGS_epochs) << ",\n  \"train_samples\": "
       << absl::GetFlag(FLAGS_train_samples) << ",\n  \"figures\": {\n";
  bool first = true;
  for (const Row& row : rows) {
    const double a = standard.at(row.key) * row.scale;
    const double b = saving.at(row.key) * row.scale;
    const double ratio = row.ratio_std_over_ours ? (b > 0 ? a / b : 0) : (a > 0 ? b / a : 0);
    std::printf("%-50s %12.2f %14.2f %9.2fx\n", row.label, a, b, ratio);
    csv << absl::StrFormat("%s,%.6g,%.6g,%.4f\n", row.key, a, b, ratio);
    json << (first ? "" : ",\n")
         << absl::StrFormat("    \"%s\": {\"standard\": %.6g, \"memory_saving\": %.6g, \"ratio\": %.4f}",
                            row.key, a, b, ratio);
    first = false;
  }
  if (!speed.empty()) {
    const double a = speed.at("standard_step_ms"), b = speed.at("saving_step_ms");
    const double ratio = speed.at("step_speedup");
    std::printf("%-50s %12.2f %14.2f %9.2fx\n",
                absl::StrFormat("step ms, interleaved (median of %d pairs)",
                                static_cast<int>(speed.at("pairs"))).c_str(),
                a, b, ratio);
    csv << absl::StrFormat("step_ms_interleaved,%.6g,%.6g,%.4f\n", a, b, ratio);
    for (const char* name : {"forward", "backward", "optimizer"}) {
      const double pa = speed.at(absl::StrCat("standard_", name, "_ms"));
      const double pb = speed.at(absl::StrCat("saving_", name, "_ms"));
      std::printf("%-50s %12.2f %14.2f %9.2fx\n", absl::StrCat("  ", name, " ms (median)").c_str(),
                  pa, pb, pb > 0 ? pa / pb : 0.0);
      csv << absl::StrFormat("%s_ms,%.6g,%.6g,%.4f\n", name, pa, pb, pb > 0 ? pa / pb : 0.0);
    }
    json << absl::StrFormat(",\n    \"step_ms_interleaved\": {\"standard\": %.6g, "
                            "\"memory_saving\": %.6g, \"speedup\": %.4f}",
                            a, b, ratio);
  }
  const double acc_gap = 100 * (standard.at("test_accuracy") - saving.at("test_accuracy"));
  json << "\n  },\n  \"accuracy_gap_pp\": " << absl::StrFormat("%.3f", acc_gap) << "\n}\n";
  std::printf("\nratios: memory and RSS are standard / this method; speed (samples/s, "
              "and step time as standard / this method) and accuracy are this method's "
              "gain. Kernel path: %s. Accuracy gap: %.2f pp\n",
              KernelPathName(ActiveKernelPath()), acc_gap);
  std::ofstream(absl::StrCat(out_dir, "/binary_train_bench.json")) << json.str();
  std::ofstream(absl::StrCat(out_dir, "/binary_train_bench.csv")) << csv.str();
  std::printf("wrote %s/binary_train_bench.{json,csv}\n", out_dir.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string method = absl::GetFlag(FLAGS_method);
  absl::Status status;
  if (method.empty()) {
    status = fedge::RunBoth("/proc/self/exe");
  } else {
    absl::StatusOr<fedge::Result> result =
        method == "speed" ? fedge::TimeSteps() : fedge::TrainOne(method);
    status = result.ok() ? fedge::WriteResult(*result, absl::GetFlag(FLAGS_result_file))
                         : result.status();
  }
  if (!status.ok()) {
    std::fprintf(stderr, "binary_train_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
