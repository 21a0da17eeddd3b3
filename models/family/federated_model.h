#ifndef FEDGE_MODELS_FAMILY_FEDERATED_MODEL_H_
#define FEDGE_MODELS_FAMILY_FEDERATED_MODEL_H_

// The one trainable-model interface of the federation: the agent's task
// runner, the coordinator's initial model, evaluation and downlink coding,
// checkpoints (by their shards) and export all go through it, whichever
// family the model is (models/family/model_spec.h):
//   mixed precision  QuantNet; a task runs one phase of the three-phase
//                    schedule (models/quant/phase_trainer.h)
//   binary           MemorySavingNet; every phase trains the latent weights
//                    and l1 norm shifts with memory-saving backprop (there
//                    is no precision to learn: weights and activations are 1
//                    bit), a fresh 16-bit Adam per task
//
//   ASSIGN_OR_RETURN(std::unique_ptr<FederatedModel> model, FederatedModel::Create(spec));
//   RETURN_IF_ERROR(model->ImportShards(task_shards));
//   model->FreezeBefore(task.trainable_from);
//   ASSIGN_OR_RETURN(PhaseReport report, model->Train(data, config));
//
// Not thread-safe: one thread owns a model.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/codec/update_codec.h"
#include "common/wire/messages.h"
#include "common/wire/model_shard.h"
#include "models/family/model_spec.h"
#include "models/quant/phase_trainer.h"

namespace fedge {

struct Dataset;
struct ExportReport;

// The model's size at its bit-widths (design 4.1's W and A; for a binary
// network every weight and hidden activation is 1 bit).
struct ModelSize {
  double weight_kb = 0;
  double activation_kb = 0;
  double mean_weight_bits = 0;
  double mean_activation_bits = 0;
  double total_kb() const { return weight_kb + activation_kb; }
  // Over weights and activations together, weighted by element counts.
  double mean_bits() const {
    const double elements = (mean_weight_bits > 0 ? weight_kb / mean_weight_bits : 0) +
                            (mean_activation_bits > 0 ? activation_kb / mean_activation_bits : 0);
    return elements > 0 ? total_kb() / elements : 0;
  }
};

class FederatedModel {
 public:
  static absl::StatusOr<std::unique_ptr<FederatedModel>> Create(const ModelSpec& spec,
                                                                uint64_t seed = 1);
  // A file SerializeExport wrote, of either family; the network it holds
  // predicts what the exported one did.
  static absl::StatusOr<std::unique_ptr<FederatedModel>> ParseExport(const std::string& bytes);
  virtual ~FederatedModel() = default;

  const ModelSpec& spec() const { return spec_; }

  // Every tensor as a float32 shard, and back: a shard the model does not
  // have, or of another size, is an error and nothing is copied.
  virtual std::vector<ModelShard> ExportShards() = 0;
  virtual absl::Status ImportShards(const std::vector<ModelShard>& shards) = 0;

  // Layers before `layer` run frozen: forward only, nothing saved for
  // backward, no gradients or optimizer state.
  virtual void FreezeBefore(int layer) = 0;

  // The initial model: mixed precision calibrates its quantizers at `bits`
  // on `sample`; a binary network sets its norms' running statistics from
  // it.
  virtual absl::Status Initialize(const Dataset& sample, int bits) = 0;

  // One task's local training. `config.phase` selects the mixed-precision
  // phase; a binary network trains the same way in every phase.
  virtual absl::StatusOr<PhaseReport> Train(const Dataset& data, const PhaseConfig& config) = 0;

  // Top-1 accuracy in evaluation mode, `batch_size` samples at a time.
  virtual absl::StatusOr<double> Evaluate(const Dataset& data, int batch_size) = 0;

  virtual ModelSize Size() = 0;
  // How the size model counts (mixed precision; a binary network has no
  // learned bit-widths and ignores it).
  virtual void SetSizeAccounting(SizeAccounting) {}

  // Brings a mixed-precision model over `budget` onto it, as the first
  // finetune phase does (QuantNet::ProjectToBudget); true when anything
  // moved. A binary network has no learned bit-widths: false.
  virtual absl::StatusOr<bool> ProjectToBudget(const Budget&) { return false; }

  // The frozen-layer coding of every weight shard, by shard name.
  virtual std::map<std::string, FrozenCoding> FrozenCodings() = 0;

  // The compact inference file (models/export/model_export.h).
  virtual absl::StatusOr<std::string> SerializeExport(ExportReport* report) = 0;

 protected:
  explicit FederatedModel(ModelSpec spec) : spec_(std::move(spec)) {}

 private:
  ModelSpec spec_;
};

}  // namespace fedge

#endif  // FEDGE_MODELS_FAMILY_FEDERATED_MODEL_H_
