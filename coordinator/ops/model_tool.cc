// Ships a trained model to inference devices: exports the coordinator's
// checkpoint as a compact mixed-precision file, evaluates such a file on the
// Fashion-MNIST test set, or describes it.
//
//   model_tool export --checkpoint=/var/lib/fedge/coordinator/checkpoint.bin --out=model.fqm
//   model_tool eval --model=model.fqm --samples=10000
//   model_tool info --model=model.fqm

#include <ATen/ATen.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "common/io/file_util.h"
#include "common/status/status_macros.h"
#include "coordinator/checkpoint.h"
#include "models/data/dataset.h"
#include "models/export/model_export.h"
#include "models/quant/model_shards.h"
#include "models/quant/phase_trainer.h"
#include "models/quant/quant_arch.h"
#include "models/quant/quant_net.h"

ABSL_FLAG(std::string, checkpoint, "", "export: the coordinator's checkpoint.bin");
ABSL_FLAG(std::string, arch, "fmnist-cnn", "export: the architecture the run trained");
ABSL_FLAG(std::string, out, "model.fqm", "export: where the model file goes");
ABSL_FLAG(std::string, model, "", "eval, info: the model file");
ABSL_FLAG(int64_t, samples, 10000, "eval: Fashion-MNIST test samples (1..10000)");
ABSL_FLAG(std::string, data_dir, fedge::kFashionMnistDir, "eval: Fashion-MNIST IDX files");

namespace fedge {
namespace {

void PrintSize(QuantNet& net) {
  const SizeReport size = net.Size();
  std::printf("arch %s: %.2f mean weight bits, %.2f mean activation bits; size model: weights %.1f kB, "
              "activations %.1f kB\n",
              net.arch().name.c_str(), size.mean_weight_bits, size.mean_activation_bits,
              size.weight_kb, size.activation_kb);
}

absl::Status Export() {
  if (absl::GetFlag(FLAGS_checkpoint).empty()) return absl::InvalidArgumentError("export needs --checkpoint");
  ASSIGN_OR_RETURN(const Checkpoint checkpoint, ReadCheckpoint(absl::GetFlag(FLAGS_checkpoint)));
  ASSIGN_OR_RETURN(const QuantArch arch, MakeQuantArch(absl::GetFlag(FLAGS_arch)));
  QuantNet net(arch, QuantNetOptions());
  RETURN_IF_ERROR(Annotate(ImportShards(net.Named(), checkpoint.model.shards),
                           absl::StrCat("the checkpoint does not fit --arch=", arch.name)));
  ExportReport report;
  RETURN_IF_ERROR(ExportModel(net, absl::GetFlag(FLAGS_out), &report));
  std::printf("exported the model after %llu rounds to %s\n",
              static_cast<unsigned long long>(checkpoint.completed_rounds),
              absl::GetFlag(FLAGS_out).c_str());
  PrintSize(net);
  std::printf("file %lld bytes: packed weights %lld bytes (size model %.0f bytes, %.2f bits each), "
              "steps, ranges, bias and batch norm %lld bytes\n",
              static_cast<long long>(report.file_bytes),
              static_cast<long long>(report.packed_weight_bytes), report.size_model_weight_bytes,
              report.mean_weight_bits, static_cast<long long>(report.other_bytes));
  return absl::OkStatus();
}

absl::Status Eval() {
  if (absl::GetFlag(FLAGS_model).empty()) return absl::InvalidArgumentError("eval needs --model");
  const int64_t samples = absl::GetFlag(FLAGS_samples);
  if (samples < 1 || samples > 10000) return absl::InvalidArgumentError("--samples must be in 1..10000");
  ASSIGN_OR_RETURN(std::unique_ptr<QuantNet> net, LoadExportedModel(absl::GetFlag(FLAGS_model)));
  ASSIGN_OR_RETURN(const Dataset test,
                   LoadFashionMnist(absl::GetFlag(FLAGS_data_dir), DataSplit::kTest, {samples, 0}));
  ASSIGN_OR_RETURN(const double accuracy, EvaluateQuant(*net, test));
  PrintSize(*net);
  std::printf("test accuracy %.2f%% on %lld Fashion-MNIST test samples\n", 100 * accuracy,
              static_cast<long long>(test.size()));
  return absl::OkStatus();
}

absl::Status Info() {
  if (absl::GetFlag(FLAGS_model).empty()) return absl::InvalidArgumentError("info needs --model");
  ASSIGN_OR_RETURN(const std::string bytes, ReadFileToString(absl::GetFlag(FLAGS_model), int64_t{1} << 31));
  ASSIGN_OR_RETURN(std::unique_ptr<QuantNet> net, ParseExportedModel(bytes));
  std::printf("%s: %zu bytes\n", absl::GetFlag(FLAGS_model).c_str(), bytes.size());
  PrintSize(*net);
  return absl::OkStatus();
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string verb = args.size() == 2 ? args[1] : "";
  absl::Status status;
  if (verb == "export") {
    status = fedge::Export();
  } else if (verb == "eval") {
    status = fedge::Eval();
  } else if (verb == "info") {
    status = fedge::Info();
  } else {
    status = absl::InvalidArgumentError("usage: model_tool export|eval|info [flags]");
  }
  if (!status.ok()) {
    std::fprintf(stderr, "model_tool: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
