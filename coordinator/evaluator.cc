#include "coordinator/evaluator.h"

#include <ATen/Parallel.h>

#include <utility>

#include "common/status/status_macros.h"
#include "models/data/dataset.h"
#include "models/family/federated_model.h"

namespace fedge {

void SetComputeThreads(int threads) { at::set_num_threads(threads); }

absl::StatusOr<ModelState> InitialModel(const ModelSpec& spec, const std::string& data_dir,
                                        int bits) {
  ASSIGN_OR_RETURN(const int pad, FashionMnistPadding(spec));
  ASSIGN_OR_RETURN(const Dataset calibration,
                   LoadFashionMnist(data_dir, DataSplit::kTrain, {256, pad}));
  ASSIGN_OR_RETURN(std::unique_ptr<FederatedModel> net, FederatedModel::Create(spec));
  RETURN_IF_ERROR(net->Initialize(calibration, bits));
  ModelState model;
  model.shards = net->ExportShards();
  return model;
}

struct ModelEvaluator::Impl {
  std::unique_ptr<FederatedModel> net;
  Dataset held_out;
};

ModelEvaluator::ModelEvaluator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ModelEvaluator::~ModelEvaluator() = default;

absl::StatusOr<std::unique_ptr<ModelEvaluator>> ModelEvaluator::Create(const ModelSpec& spec,
                                                                        const std::string& data_dir,
                                                                        int64_t samples) {
  auto impl = std::make_unique<Impl>();
  ASSIGN_OR_RETURN(impl->net, FederatedModel::Create(spec));
  if (samples > 0) {
    ASSIGN_OR_RETURN(const int pad, FashionMnistPadding(spec));
    ASSIGN_OR_RETURN(impl->held_out, LoadFashionMnist(data_dir, DataSplit::kTest, {samples, pad}));
  }
  return std::unique_ptr<ModelEvaluator>(new ModelEvaluator(std::move(impl)));
}

absl::Status ModelEvaluator::Check(const ModelState& model) {
  return impl_->net->ImportShards(model.shards);
}

ModelStats ModelEvaluator::Evaluate(const ModelState& model) {
  ModelStats stats;
  const absl::Status loaded = impl_->net->ImportShards(model.shards);
  if (loaded.ok() && impl_->held_out.size() > 0) {
    stats.test_accuracy = impl_->net->Evaluate(impl_->held_out, kEvalBatch).value_or(-1.0);
  }
  const ModelSize size = impl_->net->Size();
  stats.model_bytes = 1000 * size.total_kb();
  stats.weight_bits = size.mean_weight_bits;
  stats.activation_bits = size.mean_activation_bits;
  return stats;
}

std::map<std::string, FrozenCoding> ModelEvaluator::FrozenCodings(const ModelState& model) {
  if (!impl_->net->ImportShards(model.shards).ok()) return {};
  return impl_->net->FrozenCodings();
}

}  // namespace fedge
