// Benchmark: learned mixed precision at several size budgets against uniform
// fixed precision, on Fashion-MNIST, in one run and with the same number of
// training steps each. Writes accuracy against weights+activations memory as
// a table, JSON, CSV and an SVG plot of the frontier, and checks the design's
// target: learned mixed precision reaching uniform 4-bit accuracy with at
// most 60% of its memory.
//
//   bazel run -c opt //models/tools:mixed_precision_bench -- --out_dir=$PWD/bench_results

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/io/file_util.h"
#include "common/status/status_macros.h"
#include "common/io/svg_plot.h"
#include "models/quant/phase_trainer.h"

ABSL_FLAG(std::string, arch, "fmnist-cnn", "fmnist-cnn or fmnist-mlp");
ABSL_FLAG(int64_t, train_samples, 20000, "training samples (-1: all)");
ABSL_FLAG(int64_t, test_samples, 10000, "test samples (-1: all)");
ABSL_FLAG(int, pretrain_steps, 300, "steps of phase 1 (8-bit)");
ABSL_FLAG(int, learn_steps, 900, "steps of phase 2");
ABSL_FLAG(int, finetune_steps, 300, "steps of phase 3");
ABSL_FLAG(int, batch, 64, "batch size");
ABSL_FLAG(double, quantizer_lr, 1e-2, "Adam learning rate of the quantizers' d and xmax");
ABSL_FLAG(int, quantizer_every, 20, "learn precision: update d and xmax every N steps");
ABSL_FLAG(std::string, budgets, "1.5,2,3,4", "average bits of the learned runs' budgets");
ABSL_FLAG(std::string, uniform, "2,4,8", "bit-widths of the uniform runs");
ABSL_FLAG(int, threads, 2, "intra-op threads");
ABSL_FLAG(std::string, out_dir, "bench_results", "where JSON, CSV and SVG go");

namespace fedge {
namespace {

struct RunResult {
  std::string name;
  bool learned = false;
  double target_bits = 0;
  double accuracy = 0;
  SizeReport size;
  double seconds = 0;
};

absl::StatusOr<std::vector<double>> ParseList(const std::string& text) {
  std::vector<double> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    double v;
    if (!absl::SimpleAtod(part, &v) || v < 1 || v > 8) {
      return absl::InvalidArgumentError(absl::StrCat("bad bit value '", part, "' in '", text, "'"));
    }
    out.push_back(v);
  }
  return out;
}

absl::Status Run() {
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  ASSIGN_OR_RETURN(const QuantArch arch, MakeQuantArch(absl::GetFlag(FLAGS_arch)));
  ASSIGN_OR_RETURN(const Dataset train,
                   LoadFashionMnist(kFashionMnistDir, DataSplit::kTrain,
                                    {absl::GetFlag(FLAGS_train_samples), 0}));
  ASSIGN_OR_RETURN(const Dataset test,
                   LoadFashionMnist(kFashionMnistDir, DataSplit::kTest,
                                    {absl::GetFlag(FLAGS_test_samples), 0}));
  ASSIGN_OR_RETURN(const std::vector<double> budgets, ParseList(absl::GetFlag(FLAGS_budgets)));
  ASSIGN_OR_RETURN(const std::vector<double> uniform, ParseList(absl::GetFlag(FLAGS_uniform)));
  const int pre = absl::GetFlag(FLAGS_pretrain_steps), learn = absl::GetFlag(FLAGS_learn_steps),
            fine = absl::GetFlag(FLAGS_finetune_steps), batch = absl::GetFlag(FLAGS_batch);
  if (pre < 1 || learn < 1 || fine < 1 || batch < 1) {
    return absl::InvalidArgumentError("phase steps and batch size must be positive");
  }
  const int total_runs = static_cast<int>(budgets.size() + uniform.size());
  std::vector<RunResult> results;
  const auto bench_start = std::chrono::steady_clock::now();
  auto progress_line = [&](const RunResult& r) {
    const double elapsed = std::chrono::duration<double>(
                               std::chrono::steady_clock::now() - bench_start).count();
    const int done = static_cast<int>(results.size());
    std::fprintf(stderr, "[%d/%d] %-14s acc %.2f%%  W+A %.1f kB  (%.0fs, ETA %.0fs)\n", done,
                 total_runs, r.name.c_str(), 100 * r.accuracy, r.size.total_kb(), r.seconds,
                 elapsed / done * (total_runs - done));
  };

  for (double bits : uniform) {
    const auto start = std::chrono::steady_clock::now();
    QuantNet net(arch, QuantNetOptions());
    PhaseConfig config;
    config.phase = Phase::kPretrain;
    config.steps = pre + learn + fine;
    config.batch_size = batch;
    config.calibrate = true;
    config.pretrain_bits = static_cast<int>(bits);
    RETURN_IF_ERROR(RunPhase(net, train, config).status());
    RunResult r;
    r.name = absl::StrFormat("uniform-%d", static_cast<int>(bits));
    r.target_bits = bits;
    ASSIGN_OR_RETURN(r.accuracy, EvaluateQuant(net, test));
    r.size = net.Size();
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    results.push_back(r);
    progress_line(r);
  }
  for (double bits : budgets) {
    const auto start = std::chrono::steady_clock::now();
    QuantNet net(arch, QuantNetOptions());
    PhaseConfig config;
    config.batch_size = batch;
    config.phase = Phase::kPretrain;
    config.steps = pre;
    config.calibrate = true;
    config.pretrain_bits = 8;
    RETURN_IF_ERROR(RunPhase(net, train, config).status());
    config.phase = Phase::kLearnPrecision;
    config.steps = learn;
    config.quantizer_learning_rate = absl::GetFlag(FLAGS_quantizer_lr);
    config.quantizer_every = absl::GetFlag(FLAGS_quantizer_every);
    config.calibrate = false;
    config.budget.weight_kb = bits * arch.weight_count() / 8000.0;
    config.budget.activation_kb = bits * arch.activation_elements() / 8000.0;
    RETURN_IF_ERROR(RunPhase(net, train, config).status());
    config.phase = Phase::kFinetune;
    config.steps = fine;
    RETURN_IF_ERROR(RunPhase(net, train, config).status());
    RunResult r;
    r.name = absl::StrFormat("learned-%.1f", bits);
    r.learned = true;
    r.target_bits = bits;
    ASSIGN_OR_RETURN(r.accuracy, EvaluateQuant(net, test));
    r.size = net.Size();
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    results.push_back(r);
    progress_line(r);
  }

  std::printf("\n%s on Fashion-MNIST, %d steps each (learned: %d pretrain 8-bit, %d learn, "
              "%d finetune), batch %d\n\n",
              arch.name.c_str(), pre + learn + fine, pre, learn, fine, batch);
  std::printf("%-14s %8s %8s %10s %10s %10s %10s\n", "run", "w bits", "a bits", "W kB", "A kB",
              "W+A kB", "accuracy");
  std::ostringstream csv, json;
  csv << "run,mean_weight_bits,mean_activation_bits,weight_kb,activation_kb,total_kb,accuracy\n";
  json << "{\n  \"arch\": \"" << arch.name << "\",\n  \"runs\": [\n";
  PlotSeries learned_series{"learned mixed precision"}, uniform_series{"uniform precision"};
  const RunResult* u4 = nullptr;
  for (size_t i = 0; i < results.size(); ++i) {
    const RunResult& r = results[i];
    std::printf("%-14s %8.2f %8.2f %10.2f %10.2f %10.2f %9.2f%%\n", r.name.c_str(),
                r.size.mean_weight_bits, r.size.mean_activation_bits, r.size.weight_kb,
                r.size.activation_kb, r.size.total_kb(), 100 * r.accuracy);
    csv << absl::StrFormat("%s,%.3f,%.3f,%.3f,%.3f,%.3f,%.4f\n", r.name, r.size.mean_weight_bits,
                           r.size.mean_activation_bits, r.size.weight_kb, r.size.activation_kb,
                           r.size.total_kb(), r.accuracy);
    json << absl::StrFormat(
        "    {\"run\": \"%s\", \"mean_weight_bits\": %.3f, \"mean_activation_bits\": %.3f, "
        "\"total_kb\": %.3f, \"accuracy\": %.4f}%s\n",
        r.name, r.size.mean_weight_bits, r.size.mean_activation_bits, r.size.total_kb(),
        r.accuracy, i + 1 < results.size() ? "," : "");
    PlotSeries& s = r.learned ? learned_series : uniform_series;
    s.x.push_back(r.size.total_kb());
    s.y.push_back(100 * r.accuracy);
    if (!r.learned && r.target_bits == 4) u4 = &r;
  }
  json << "  ]";
  if (u4 != nullptr) {
    const RunResult* best = nullptr;
    for (const RunResult& r : results) {
      if (r.learned && r.accuracy >= u4->accuracy &&
          (best == nullptr || r.size.total_kb() < best->size.total_kb())) {
        best = &r;
      }
    }
    if (best != nullptr) {
      const double ratio = best->size.total_kb() / u4->size.total_kb();
      std::printf("\nsmallest learned run at or above uniform-4 accuracy (%.2f%%): %s, %.1f%% of "
                  "its memory (target <= 60%%)\n",
                  100 * u4->accuracy, best->name.c_str(), 100 * ratio);
      json << absl::StrFormat(",\n  \"memory_vs_uniform4\": %.4f, \"matching_run\": \"%s\"",
                              ratio, best->name);
    } else {
      std::printf("\nno learned run reached uniform-4 accuracy (%.2f%%)\n", 100 * u4->accuracy);
      json << ",\n  \"memory_vs_uniform4\": null";
    }
  }
  json << "\n}\n";
  const std::string dir = absl::GetFlag(FLAGS_out_dir);
  RETURN_IF_ERROR(CreateDirectories(dir));
  std::ofstream(dir + "/mixed_precision_bench.json") << json.str();
  std::ofstream(dir + "/mixed_precision_bench.csv") << csv.str();
  PlotOptions plot;
  plot.title = absl::StrFormat("%s on Fashion-MNIST: accuracy vs weights+activations", arch.name);
  plot.x_label = "weights + activations (kB)";
  plot.y_label = "test accuracy (%)";
  std::ofstream(dir + "/mixed_precision_frontier.svg")
      << RenderSvgPlot({learned_series, uniform_series}, plot);
  std::printf("wrote %s/mixed_precision_bench.{json,csv} and mixed_precision_frontier.svg\n",
              dir.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = fedge::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "mixed_precision_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
