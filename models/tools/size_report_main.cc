// Prints per-layer bit-widths and sizes (design 4.1's size model) of a known
// mixed-precision architecture at uniform precision.
//
//   bazel run //models/tools:size_report -- --arch=mobilenetv2 --weight_bits=4 --act_bits=4

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_join.h"
#include "models/quant/quant_arch.h"
#include "models/quant/size_model.h"

ABSL_FLAG(std::string, arch, "mobilenetv2",
          "fmnist-cnn, fmnist-mlp, mobilenetv2, efficientnet-lite0 or resnet18");
ABSL_FLAG(int, weight_bits, 8, "bits per weight (1..8)");
ABSL_FLAG(int, act_bits, 8, "bits per activation (1..8)");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int wb = absl::GetFlag(FLAGS_weight_bits), ab = absl::GetFlag(FLAGS_act_bits);
  if (wb < 1 || wb > 8 || ab < 1 || ab > 8) {
    std::fprintf(stderr, "size_report: --weight_bits and --act_bits must be in [1, 8]\n");
    return 2;
  }
  const absl::StatusOr<fedge::QuantArch> arch = fedge::MakeQuantArch(absl::GetFlag(FLAGS_arch));
  if (!arch.ok()) {
    std::fprintf(stderr, "size_report: %s\n", arch.status().ToString().c_str());
    return 2;
  }
  std::printf("%s at %d-bit weights, %d-bit activations\n\n", arch->name.c_str(), wb, ab);
  std::printf("%s", fedge::FormatSizeReport(*arch, fedge::UniformSize(*arch, wb, ab)).c_str());
  return 0;
}
