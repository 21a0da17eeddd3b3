// Prints the training-memory model of design 4.2 for a known architecture,
// both columns (standard float32 BNN training and the memory-saving method),
// with the bytes measured beside it: the MemoryLedger's per-layer record of
// what the memory-saving layers saved during one real training step, and
// the counting allocator's view of what each network held for backward.
//
//   bazel run //models/tools:memory_report -- --arch=cnv --batch=100 --input=1x32x32

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdio>
#include <map>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"
#include "models/bnn/arch.h"
#include "models/bnn/binary_net.h"
#include "models/memory/counting_allocator.h"
#include "models/memory/memory_model.h"
#include "models/bnn/standard_net.h"
#include "models/quant/quant_arch.h"

ABSL_FLAG(std::string, arch, "cnv",
          "architecture: mlp, cnv or binarynet (binary networks), or a mixed-precision one "
          "(fmnist-cnn, fmnist-mlp, mobilenetv2, ...): the memory the shard planner budgets "
          "for each trainable suffix");
ABSL_FLAG(int, batch, 100, "batch size");
ABSL_FLAG(std::string, input, "1x32x32", "input shape CxHxW");
ABSL_FLAG(std::string, conventions, "both",
          "model columns: project (16-bit dX buffers, the image kept at 32 bits), paper "
          "(the seed's spreadsheet: dX buffers 16 + 5 bits, the image at 1 bit) or both");
ABSL_FLAG(bool, measure, true,
          "run one training step of each network to measure actual bytes");

namespace fedge {
namespace {

double KiB(int64_t bytes) { return bytes / 1024.0; }

// Bytes live after one training-mode forward beyond those live before it,
// the logits excluded; the step is then completed so state is allocated.
int64_t MeasureHeld(TrainableNet& net, const at::Tensor& x, int classes) {
  const at::Tensor y = at::randint(classes, {x.size(0)}, at::kLong);
  int64_t held = 0;
  for (int step = 0; step < 2; ++step) {  // the second step is steady state
    const int64_t before = CountingCpuAllocator::LiveBytes();
    const at::Tensor logits = net.Forward(x, true);
    held = CountingCpuAllocator::LiveBytes() - before - logits.nbytes();
    at::nll_loss(at::log_softmax(logits, 1), y).backward();
    net.Step();
  }
  return held;
}

// The mixed-precision model: training memory by first trainable layer, the
// estimate the shard planner gives each agent's budget.
void ReportQuant(const QuantArch& arch, int batch) {
  std::printf("%s, batch %d: training memory by the first trainable layer\n", arch.name.c_str(),
              batch);
  std::printf("%-6s %-20s %14s\n", "from", "layer", "estimate MiB");
  for (size_t from = 0; from < arch.layers.size(); ++from) {
    std::printf("%-6zu %-20s %14.2f\n", from, arch.layers[from].name.c_str(),
                QuantTrainingMemory(arch, static_cast<int>(from), batch) / 1048576.0);
  }
}

absl::Status Run() {
  const int batch = absl::GetFlag(FLAGS_batch);
  if (batch < 1 || batch > 100000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--batch=", batch, " must be in [1, 100000]"));
  }
  if (absl::StatusOr<QuantArch> quant = MakeQuantArch(absl::GetFlag(FLAGS_arch)); quant.ok()) {
    ReportQuant(*quant, batch);
    return absl::OkStatus();
  }
  const std::string conventions = absl::GetFlag(FLAGS_conventions);
  if (conventions != "project" && conventions != "paper" && conventions != "both") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--conventions=", conventions, ": expected project, paper or both"));
  }
  ASSIGN_OR_RETURN(const InputShape input, ParseInputShape(absl::GetFlag(FLAGS_input)));
  ASSIGN_OR_RETURN(const ArchSpec arch, MakeArch(absl::GetFlag(FLAGS_arch), input));
  const MemoryModel standard = ModelTrainingMemory(arch, batch, StandardTrainingBits());
  const MemoryModel saving = ModelTrainingMemory(arch, batch, MemorySavingTrainingBits());

  MemoryLedger ledger;
  int64_t held_standard = 0, held_saving = 0;
  int64_t state_standard = 0, state_saving = 0;
  if (absl::GetFlag(FLAGS_measure)) {
    RETURN_IF_ERROR(CallTorch("measuring", [&] {
      const at::Tensor x = at::randn({batch, input.channels, input.height, input.width});
      MemorySavingNet net(arch, MemorySavingOptions(), &ledger);
      held_saving = MeasureHeld(net, x, arch.num_classes);
      state_saving = net.StateBytes(StateKind::kWeights) +
                     net.StateBytes(StateKind::kWeightGrads) +
                     net.StateBytes(StateKind::kOptimizer);
      StandardNet reference(arch, StandardOptions());
      held_standard = MeasureHeld(reference, x, arch.num_classes);
      state_standard = reference.StateBytes(StateKind::kWeights) +
                       reference.StateBytes(StateKind::kWeightGrads) +
                       reference.StateBytes(StateKind::kOptimizer);
      return absl::OkStatus();
    }));
  }

  std::printf("Training memory of %s, input %dx%dx%d, batch %d (KiB)\n\n",
              arch.name.c_str(), input.channels, input.height, input.width, batch);
  std::printf("%-8s | %12s %12s | %12s %12s | %14s\n", "layer", "std W+dW+m+v",
              "std act", "ours W-state", "ours act", "ledger saved");
  std::printf("%.*s\n", 84, "-------------------------------------------------------"
                              "-------------------------------------------------------");
  const auto measured = ledger.layers();
  for (size_t i = 0; i < standard.layers.size(); ++i) {
    const std::string& name = standard.layers[i].name;
    // The ledger's entry for a weight layer is its saved input; its batch
    // norm (and a following pool) are listed under their own names below.
    auto it = measured.find(name);
    std::printf("%-8s | %12.1f %12.1f | %12.1f %12.1f | %14.1f\n", name.c_str(),
                KiB(standard.layers[i].weight_state_bytes),
                KiB(standard.layers[i].activation_bytes),
                KiB(saving.layers[i].weight_state_bytes),
                KiB(saving.layers[i].activation_bytes),
                it == measured.end() ? 0.0 : KiB(it->second.peak));
  }
  int64_t extra = 0;
  for (const auto& [name, bytes] : measured) {
    bool weight_layer = false;
    for (const auto& l : standard.layers) weight_layer |= l.name == name;
    if (!weight_layer) extra += bytes.peak;
  }
  std::printf("%-8s | %25s | %25s | %14.1f\n", "bn/pool", "(not in the model)",
              "(not in the model)", KiB(extra));
  std::printf("\n%-34s %14s %14s %8s\n", "", "standard", "this method", "ratio");
  auto row = [](const char* label, double a, double b) {
    std::printf("%-34s %14.1f %14.1f %7.2fx\n", label, KiB(a), KiB(b), b > 0 ? a / b : 0.0);
  };
  if (conventions != "paper") {
    row("model: weights, dW, Adam m+v", standard.weight_state_bytes, saving.weight_state_bytes);
    row("model: saved activations", standard.activation_bytes, saving.activation_bytes);
    row("model: dX buffers", standard.grad_buffer_bytes, saving.grad_buffer_bytes);
    row("model: total", standard.total_bytes(), saving.total_bytes());
  }
  if (conventions != "project") {
    const MemoryModel paper = ModelTrainingMemory(arch, batch, PaperTrainingBits());
    row("paper model: weights, dW, Adam m+v", standard.weight_state_bytes,
        paper.weight_state_bytes);
    row("paper model: saved activations", standard.activation_bytes, paper.activation_bytes);
    row("paper model: dX buffers (16+5 bits)", standard.grad_buffer_bytes,
        paper.grad_buffer_bytes);
    row("paper model: total", standard.total_bytes(), paper.total_bytes());
  }
  if (absl::GetFlag(FLAGS_measure)) {
    row("measured: state (W, dW, Adam)", state_standard, state_saving);
    row("measured: held for backward", held_standard, held_saving);
    row("measured: total", state_standard + held_standard, state_saving + held_saving);
    std::printf("\nledger: %.1f KiB saved by the memory-saving layers at peak "
                "(includes the %0.1f KiB input batch the first layer keeps)\n",
                KiB(ledger.peak_saved_bytes()),
                KiB(int64_t{batch} * input.channels * input.height * input.width * 4));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  fedge::CountingCpuAllocator::Install();
  at::set_num_threads(2);
  const absl::Status status = fedge::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "memory_report: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
