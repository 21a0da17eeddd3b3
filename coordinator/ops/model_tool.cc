// Ships a trained model to inference devices: exports the coordinator's
// checkpoint as a compact file (a mixed-precision network's weights packed at
// their learned bit-widths, a binary network's as 1-bit signs), evaluates
// such a file on the Fashion-MNIST test set, or describes it.
//
//   model_tool export --checkpoint=/var/lib/fedge/coordinator/checkpoint.bin --out=model.fqm
//   model_tool export --arch=cnv --checkpoint=... --out=model.fbn
//   model_tool eval --model=model.fqm --samples=10000
//   model_tool info --model=model.fqm

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "common/io/file_util.h"
#include "common/status/status_macros.h"
#include "coordinator/checkpoint.h"
#include "models/bnn/arch.h"
#include "models/data/dataset.h"
#include "models/export/model_export.h"
#include "models/family/federated_model.h"

ABSL_FLAG(std::string, checkpoint, "", "export: the coordinator's checkpoint.bin");
ABSL_FLAG(std::string, arch, "fmnist-cnn", "export: the model the run trained (its --arch)");
ABSL_FLAG(std::string, input_shape, "", "export: a binary network's --input_shape, if set");
ABSL_FLAG(std::string, out, "model.fqm", "export: where the model file goes");
ABSL_FLAG(std::string, model, "", "eval, info: the model file");
ABSL_FLAG(int64_t, samples, 10000, "eval: Fashion-MNIST test samples (1..10000)");
ABSL_FLAG(std::string, data_dir, fedge::kFashionMnistDir, "eval: Fashion-MNIST IDX files");

namespace fedge {
namespace {

void PrintSize(FederatedModel& net) {
  const ModelSize size = net.Size();
  std::printf("%s: %.2f mean weight bits, %.2f mean activation bits; size model: weights %.1f kB, "
              "activations %.1f kB\n",
              net.spec().Describe().c_str(), size.mean_weight_bits, size.mean_activation_bits,
              size.weight_kb, size.activation_kb);
}

absl::Status Export() {
  if (absl::GetFlag(FLAGS_checkpoint).empty()) return absl::InvalidArgumentError("export needs --checkpoint");
  ASSIGN_OR_RETURN(const Checkpoint checkpoint, ReadCheckpoint(absl::GetFlag(FLAGS_checkpoint)));
  std::optional<InputShape> input;
  if (!absl::GetFlag(FLAGS_input_shape).empty()) {
    absl::StatusOr<InputShape> parsed = ParseInputShape(absl::GetFlag(FLAGS_input_shape));
    if (!parsed.ok()) return Annotate(parsed.status(), "--input_shape");
    input = *parsed;
  }
  absl::StatusOr<ModelSpec> spec = MakeModelSpec(absl::GetFlag(FLAGS_arch), input);
  if (!spec.ok()) return Annotate(spec.status(), "--arch");
  ASSIGN_OR_RETURN(std::unique_ptr<FederatedModel> net, FederatedModel::Create(*spec));
  RETURN_IF_ERROR(Annotate(net->ImportShards(checkpoint.model.shards),
                           absl::StrCat("the checkpoint does not fit --arch=", spec->name)));
  ExportReport report;
  ASSIGN_OR_RETURN(const std::string file, net->SerializeExport(&report));
  RETURN_IF_ERROR(WriteFileAtomically(absl::GetFlag(FLAGS_out), file));
  std::printf("exported the model after %llu rounds to %s\n",
              static_cast<unsigned long long>(checkpoint.completed_rounds),
              absl::GetFlag(FLAGS_out).c_str());
  PrintSize(*net);
  std::printf("file %lld bytes: packed weights %lld bytes (size model %.0f bytes, %.2f bits each), "
              "steps, ranges, biases and norms %lld bytes\n",
              static_cast<long long>(report.file_bytes),
              static_cast<long long>(report.packed_weight_bytes), report.size_model_weight_bytes,
              report.mean_weight_bits, static_cast<long long>(report.other_bytes));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FederatedModel>> Load() {
  ASSIGN_OR_RETURN(const std::string bytes, ReadFileToString(absl::GetFlag(FLAGS_model), int64_t{1} << 31));
  absl::StatusOr<std::unique_ptr<FederatedModel>> net = FederatedModel::ParseExport(bytes);
  if (!net.ok()) return Annotate(net.status(), absl::GetFlag(FLAGS_model));
  std::printf("%s: %zu bytes\n", absl::GetFlag(FLAGS_model).c_str(), bytes.size());
  return net;
}

absl::Status Eval() {
  if (absl::GetFlag(FLAGS_model).empty()) return absl::InvalidArgumentError("eval needs --model");
  const int64_t samples = absl::GetFlag(FLAGS_samples);
  if (samples < 1 || samples > 10000) return absl::InvalidArgumentError("--samples must be in 1..10000");
  ASSIGN_OR_RETURN(std::unique_ptr<FederatedModel> net, Load());
  ASSIGN_OR_RETURN(const int pad, FashionMnistPadding(net->spec()));
  ASSIGN_OR_RETURN(const Dataset test,
                   LoadFashionMnist(absl::GetFlag(FLAGS_data_dir), DataSplit::kTest, {samples, pad}));
  ASSIGN_OR_RETURN(const double accuracy, net->Evaluate(test, 200));
  PrintSize(*net);
  std::printf("test accuracy %.2f%% on %lld Fashion-MNIST test samples\n", 100 * accuracy,
              static_cast<long long>(test.size()));
  return absl::OkStatus();
}

absl::Status Info() {
  if (absl::GetFlag(FLAGS_model).empty()) return absl::InvalidArgumentError("info needs --model");
  ASSIGN_OR_RETURN(std::unique_ptr<FederatedModel> net, Load());
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
