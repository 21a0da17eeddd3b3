#ifndef FEDGE_MODELS_MODEL_EXPORT_H_
#define FEDGE_MODELS_MODEL_EXPORT_H_

// The trained mixed-precision model as a compact file for inference devices:
// each layer's weights as integer codes packed at their slice's learned
// bit-width (one bitstream per tensor), and the small tensors (steps,
// ranges, bias, batch-norm statistics) as float32. Loading rebuilds the
// network with weights = code x step, exactly what the quantized forward
// pass computes, so predictions are the same as the exported network's.
//
// File: "FEDGEQM1", a 64-bit fingerprint of the rest, then the arch name and
// one record per tensor (name, layer, shape, and either float32 values or the
// per-slice bits and the packed codes). Every field is checked on load.
//
//   ExportReport report;
//   RETURN_IF_ERROR(ExportModel(net, "model.fqm", &report));
//   ASSIGN_OR_RETURN(std::unique_ptr<QuantNet> loaded, LoadExportedModel("model.fqm"));

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/wire/model_shard.h"
#include "models/bnn/arch.h"
#include "models/bnn/trainable_net.h"
#include "models/quant/quant_net.h"

namespace fedge {

struct ExportReport {
  int64_t file_bytes = 0;
  int64_t packed_weight_bytes = 0;  // the weight bitstreams
  int64_t other_bytes = 0;          // names, shapes, bits, float32 tensors
  double size_model_weight_bytes = 0;  // what the size model says the weights take
  double mean_weight_bits = 0;
};

absl::StatusOr<std::string> SerializeExportedModel(QuantNet& net, ExportReport* report);
absl::Status ExportModel(QuantNet& net, const std::string& path, ExportReport* report);

absl::StatusOr<std::unique_ptr<QuantNet>> ParseExportedModel(const std::string& bytes);
absl::StatusOr<std::unique_ptr<QuantNet>> LoadExportedModel(const std::string& path);

// A binary network's file ("FEDGEBN1"): the arch name, input shape and
// class count, then each weight tensor as 1-bit signs (1: w >= 0) and the
// l1 norms' shifts and statistics as float32. What a binary forward pass
// needs: sign(W) is all it uses.
struct ExportedBinary {
  std::string arch;
  InputShape input;
  int num_classes = 10;
  std::vector<ModelShard> shards;  // weights as +-1
};
absl::StatusOr<std::string> SerializeExportedBinary(const std::vector<NamedTensor>& named,
                                                    const ArchSpec& arch, ExportReport* report);
absl::StatusOr<ExportedBinary> ParseExportedBinary(const std::string& bytes);

// Which kind of file `bytes` holds: true for a binary network's.
bool IsExportedBinary(const std::string& bytes);

}  // namespace fedge

#endif  // FEDGE_MODELS_MODEL_EXPORT_H_
