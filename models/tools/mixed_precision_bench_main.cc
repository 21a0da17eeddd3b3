// Benchmark: learned mixed precision at several size budgets against uniform
// fixed precision, on Fashion-MNIST, in one run and with the same number of
// training steps each. Writes accuracy against weights+activations memory as
// a table, JSON, CSV and an SVG plot of the frontier, and checks the design's
// target: learned mixed precision reaching uniform 4-bit accuracy with at
// most 60% of its memory. Every point runs --seeds times (initial weights
// and batch order): mean +- standard deviation, error bars on the plot, and
// whether each learned run ended within its budgets (W <= 1.02 W*,
// A <= 1.02 A*).
//
//   bazel run -c opt //models/tools:mixed_precision_bench -- --out_dir=$PWD/bench_results

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/io/file_util.h"
#include "common/stats/summary.h"
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
ABSL_FLAG(double, quantizer_lr, 1e-2,
          "Adam learning rate of the quantizers' d and xmax (relative per update in log scale)");
ABSL_FLAG(int, quantizer_every, 1, "learn precision: update d and xmax every N steps");
ABSL_FLAG(bool, quantizer_log_scale, true,
          "update log d and log xmax (false: d and xmax themselves, the seed's update)");
ABSL_FLAG(std::string, penalty, "relative", "size penalty: relative or absolute (kB, the seed's)");
ABSL_FLAG(double, lambda, 0, "the penalty's lambda for weights and activations (0: the form's default)");
ABSL_FLAG(std::string, accounting, "reference", "size accounting: reference or project");
ABSL_FLAG(std::string, budgets, "2,3,4",
          "average bits of the learned runs' budgets: B for weights and activations alike, or "
          "W/A for a weight budget of W and an activation budget of A bits");
ABSL_FLAG(std::string, uniform, "2,3,4,8", "bit-widths of the uniform runs");
ABSL_FLAG(bool, project_first, false,
          "learned runs: project onto the budget before the learn phase (always before finetune)");
ABSL_FLAG(bool, binary_slices, true,
          "weight slices may be binary (1 bit, sign x scale); false: signed slices keep 2 bits");
ABSL_FLAG(int, seeds, 3, "seeds per point (mean and standard deviation over them)");
ABSL_FLAG(int, threads, 2, "intra-op threads");
ABSL_FLAG(std::string, out_dir, "bench_results", "where JSON, CSV and SVG go");

namespace fedge {
namespace {

struct RunResult {
  double accuracy = 0;
  SizeReport size;
  double seconds = 0;
  bool within_budget = true;  // W <= 1.02 W* and A <= 1.02 A*
};

// One point of the frontier: a configuration over its seeds.
struct Point {
  std::string name;
  bool learned = false;
  double target_bits = 0;      // uniform: the bit-width; learned: the weight budget's bits
  double act_target_bits = 0;  // learned: the activation budget's bits
  std::vector<RunResult> runs;
};

template <typename F>
MeanSd Over(const Point& p, F field) {
  std::vector<double> v;
  for (const RunResult& r : p.runs) v.push_back(field(r));
  return Summarize(v);
}

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

// "B" (both budgets at B bits) or "W/A" for each learned run.
absl::StatusOr<std::vector<std::pair<double, double>>> ParseBudgets(const std::string& text) {
  std::vector<std::pair<double, double>> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    const std::vector<std::string> wa = absl::StrSplit(part, '/');
    if (wa.size() > 2) return absl::InvalidArgumentError(absl::StrCat("bad budget '", part, "'"));
    ASSIGN_OR_RETURN(const std::vector<double> w, ParseList(wa[0]));
    ASSIGN_OR_RETURN(const std::vector<double> a, ParseList(wa.back()));
    if (w.size() != 1 || a.size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat("bad budget '", part, "' in '", text, "'"));
    }
    out.emplace_back(w[0], a[0]);
  }
  return out;
}

absl::Status Run() {
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  ASSIGN_OR_RETURN(QuantArch arch, MakeQuantArch(absl::GetFlag(FLAGS_arch)));
  ASSIGN_OR_RETURN(arch.accounting, ParseSizeAccounting(absl::GetFlag(FLAGS_accounting)));
  ASSIGN_OR_RETURN(const PenaltyForm form, ParsePenaltyForm(absl::GetFlag(FLAGS_penalty)));
  const double lambda =
      absl::GetFlag(FLAGS_lambda) > 0 ? absl::GetFlag(FLAGS_lambda) : DefaultLambda(form);
  ASSIGN_OR_RETURN(const Dataset train,
                   LoadFashionMnist(kFashionMnistDir, DataSplit::kTrain,
                                    {absl::GetFlag(FLAGS_train_samples), 0}));
  ASSIGN_OR_RETURN(const Dataset test,
                   LoadFashionMnist(kFashionMnistDir, DataSplit::kTest,
                                    {absl::GetFlag(FLAGS_test_samples), 0}));
  ASSIGN_OR_RETURN(const auto budgets, ParseBudgets(absl::GetFlag(FLAGS_budgets)));
  ASSIGN_OR_RETURN(const std::vector<double> uniform, ParseList(absl::GetFlag(FLAGS_uniform)));
  const int pre = absl::GetFlag(FLAGS_pretrain_steps), learn = absl::GetFlag(FLAGS_learn_steps),
            fine = absl::GetFlag(FLAGS_finetune_steps), batch = absl::GetFlag(FLAGS_batch),
            seeds = absl::GetFlag(FLAGS_seeds);
  if (pre < 1 || learn < 1 || fine < 1 || batch < 1 || seeds < 1 || seeds > 100 ||
      absl::GetFlag(FLAGS_quantizer_every) < 1 || !(absl::GetFlag(FLAGS_quantizer_lr) > 0)) {
    return absl::InvalidArgumentError(
        "phase steps, batch size, --quantizer_every and --quantizer_lr must be positive, "
        "--seeds in [1, 100]");
  }
  std::vector<Point> points;
  for (double bits : uniform) {
    points.push_back({absl::StrFormat("uniform-%d", static_cast<int>(bits)), false, bits, bits, {}});
  }
  for (const auto& [w, a] : budgets) {
    const std::string name = w == a ? absl::StrFormat("learned-%.1f", w)
                                    : absl::StrFormat("learned-%g/%g", w, a);
    points.push_back({name, true, w, a, {}});
  }
  const int total_runs = static_cast<int>(points.size()) * seeds;
  int done = 0;
  const auto bench_start = std::chrono::steady_clock::now();

  for (Point& point : points) {
    for (int seed = 1; seed <= seeds; ++seed) {
      const auto start = std::chrono::steady_clock::now();
      QuantNetOptions net_options;
      net_options.seed = static_cast<uint64_t>(seed);
      net_options.weight_config.binary_slices = absl::GetFlag(FLAGS_binary_slices);
      QuantNet net(arch, net_options);
      PhaseConfig config;
      config.batch_size = batch;
      config.seed = static_cast<uint64_t>(seed);
      config.phase = Phase::kPretrain;
      config.calibrate = true;
      RunResult r;
      if (!point.learned) {
        config.steps = pre + learn + fine;
        config.pretrain_bits = static_cast<int>(point.target_bits);
        RETURN_IF_ERROR(RunPhase(net, train, config).status());
      } else {
        config.steps = pre;
        config.pretrain_bits = 8;
        RETURN_IF_ERROR(RunPhase(net, train, config).status());
        config.phase = Phase::kLearnPrecision;
        config.steps = learn;
        config.quantizer_learning_rate = absl::GetFlag(FLAGS_quantizer_lr);
        config.quantizer_every = absl::GetFlag(FLAGS_quantizer_every);
        config.quantizer_log_scale = absl::GetFlag(FLAGS_quantizer_log_scale);
        config.project_first = absl::GetFlag(FLAGS_project_first);
        config.calibrate = false;
        config.budget = {arch.WeightBudgetKb(point.target_bits),
                         arch.ActivationBudgetKb(point.act_target_bits), lambda, lambda, form};
        ASSIGN_OR_RETURN(const PhaseReport learned, RunPhase(net, train, config));
        config.phase = Phase::kFinetune;
        config.steps = fine;
        ASSIGN_OR_RETURN(const PhaseReport tuned, RunPhase(net, train, config));
        std::fprintf(stderr,
                     "  learned: W %.2f bits, A %.2f bits%s; the projection took %d weight and %d "
                     "activation bits and gave back %d and %d: W %.2f, A %.2f bits\n",
                     learned.size.mean_weight_bits, learned.size.mean_activation_bits,
                     learned.restored_best ? " (best state within budget)" : "",
                     tuned.projected_weight_bits, tuned.projected_activation_bits,
                     tuned.refilled_weight_bits, tuned.refilled_activation_bits,
                     tuned.size.mean_weight_bits, tuned.size.mean_activation_bits);
      }
      ASSIGN_OR_RETURN(r.accuracy, EvaluateQuant(net, test));
      r.size = net.Size();
      if (point.learned) {
        r.within_budget = r.size.weight_kb <= 1.02 * config.budget.weight_kb &&
                          r.size.activation_kb <= 1.02 * config.budget.activation_kb;
      }
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      point.runs.push_back(r);
      ++done;
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - bench_start).count();
      std::fprintf(stderr,
                   "[%d/%d] %-14s seed %d  acc %.2f%%  W %.2f bits  A %.2f bits  W+A %.1f kB%s  "
                   "(%.0fs, ETA %.0fs)\n",
                   done, total_runs, point.name.c_str(), seed, 100 * r.accuracy,
                   r.size.mean_weight_bits, r.size.mean_activation_bits, r.size.total_kb(),
                   r.within_budget ? "" : "  OVER BUDGET", r.seconds,
                   elapsed / done * (total_runs - done));
    }
  }

  std::printf("\n%s on Fashion-MNIST, %d steps each (learned: %d pretrain 8-bit, %d learn, "
              "%d finetune), batch %d; %d seeds per point, mean +- standard deviation; %s "
              "accounting, %s penalty (lambda %g), quantizer updates every %d step(s) in %s, "
              "%s\n\n",
              arch.name.c_str(), pre + learn + fine, pre, learn, fine, batch, seeds,
              SizeAccountingName(arch.accounting), PenaltyFormName(form), lambda,
              absl::GetFlag(FLAGS_quantizer_every),
              absl::GetFlag(FLAGS_quantizer_log_scale) ? "log scale" : "linear scale",
              absl::GetFlag(FLAGS_binary_slices) ? "binary weight slices allowed"
                                                 : "signed weight slices of at least 2 bits");
  std::printf("%-14s %13s %13s %17s %10s %17s %7s\n", "run", "w bits", "a bits", "W+A kB",
              "(W+A)/8b", "accuracy", "budget");
  std::ostringstream csv, json;
  csv << "run,seed,mean_weight_bits,mean_activation_bits,weight_kb,activation_kb,total_kb,"
         "accuracy,within_budget\n";
  json << "{\n  \"arch\": \"" << arch.name << "\", \"seeds\": " << seeds
       << ", \"accounting\": \"" << SizeAccountingName(arch.accounting) << "\", \"penalty\": \""
       << PenaltyFormName(form) << "\",\n  \"points\": [\n";
  PlotSeries learned_series{"learned mixed precision"}, uniform_series{"uniform precision"};
  const double full_kb = UniformSize(arch, 8, 8).total_kb();
  const Point* u4 = nullptr;
  for (size_t i = 0; i < points.size(); ++i) {
    const Point& p = points[i];
    const MeanSd acc = Over(p, [](const RunResult& r) { return 100 * r.accuracy; });
    const MeanSd kb = Over(p, [](const RunResult& r) { return r.size.total_kb(); });
    const MeanSd wb = Over(p, [](const RunResult& r) { return r.size.mean_weight_bits; });
    const MeanSd ab = Over(p, [](const RunResult& r) { return r.size.mean_activation_bits; });
    int within = 0;
    for (const RunResult& r : p.runs) within += r.within_budget;
    std::printf("%-14s %6.2f+-%-5.2f %6.2f+-%-5.2f %8.2f+-%-7.2f %9.1f%% %8.2f+-%-5.2f%% %3d/%-3d\n",
                p.name.c_str(), wb.mean, wb.sd, ab.mean, ab.sd, kb.mean, kb.sd,
                100 * kb.mean / full_kb, acc.mean, acc.sd, within,
                static_cast<int>(p.runs.size()));
    for (size_t k = 0; k < p.runs.size(); ++k) {
      const RunResult& r = p.runs[k];
      csv << absl::StrFormat("%s,%d,%.3f,%.3f,%.3f,%.3f,%.3f,%.4f,%d\n", p.name, k + 1,
                             r.size.mean_weight_bits, r.size.mean_activation_bits,
                             r.size.weight_kb, r.size.activation_kb, r.size.total_kb(),
                             r.accuracy, r.within_budget ? 1 : 0);
    }
    json << absl::StrFormat(
        "    {\"run\": \"%s\", \"mean_weight_bits\": %.3f, \"mean_activation_bits\": %.3f, "
        "\"total_kb\": %.3f, \"total_kb_sd\": %.3f, \"accuracy\": %.4f, \"accuracy_sd\": %.4f, "
        "\"within_budget\": %d}%s\n",
        p.name, wb.mean, ab.mean, kb.mean, kb.sd, acc.mean / 100, acc.sd / 100, within,
        i + 1 < points.size() ? "," : "");
    PlotSeries& s = p.learned ? learned_series : uniform_series;
    s.x.push_back(kb.mean);
    s.x_err.push_back(kb.sd);
    s.y.push_back(acc.mean);
    s.y_err.push_back(acc.sd);
    if (!p.learned && p.target_bits == 4) u4 = &p;
  }
  json << "  ]";
  if (u4 != nullptr) {
    const double u4_acc = Over(*u4, [](const RunResult& r) { return r.accuracy; }).mean;
    const double u4_kb = Over(*u4, [](const RunResult& r) { return r.size.total_kb(); }).mean;
    const Point* best = nullptr;
    double best_kb = 0;
    for (const Point& p : points) {
      const double acc = Over(p, [](const RunResult& r) { return r.accuracy; }).mean;
      const double kb = Over(p, [](const RunResult& r) { return r.size.total_kb(); }).mean;
      if (p.learned && acc >= u4_acc && (best == nullptr || kb < best_kb)) {
        best = &p;
        best_kb = kb;
      }
    }
    if (best != nullptr) {
      const double ratio = best_kb / u4_kb;
      std::printf("\nsmallest learned point at or above uniform-4's mean accuracy (%.2f%%): %s, "
                  "%.1f%% of its weights+activations (target <= 60%%)\n",
                  100 * u4_acc, best->name.c_str(), 100 * ratio);
      json << absl::StrFormat(",\n  \"memory_vs_uniform4\": %.4f, \"matching_run\": \"%s\"",
                              ratio, best->name);
    } else {
      std::printf("\nno learned point reached uniform-4's mean accuracy (%.2f%%)\n", 100 * u4_acc);
      json << ",\n  \"memory_vs_uniform4\": null";
    }
  }
  json << "\n}\n";
  const std::string dir = absl::GetFlag(FLAGS_out_dir);
  RETURN_IF_ERROR(CreateDirectories(dir));
  std::ofstream(dir + "/mixed_precision_bench.json") << json.str();
  std::ofstream(dir + "/mixed_precision_bench.csv") << csv.str();
  PlotOptions plot;
  plot.title = absl::StrFormat("%s on Fashion-MNIST: accuracy vs weights+activations (%d seeds)",
                               arch.name, seeds);
  plot.x_label = "weights + activations (kB), mean +- sd";
  plot.y_label = "test accuracy (%), mean +- sd";
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
