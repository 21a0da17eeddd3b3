#include "coordinator/evaluator.h"

#include <ATen/Parallel.h>

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
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

absl::StatusOr<bool> ModelEvaluator::ProjectToBudget(const Hyper& hyper, ModelState* model) {
  if (hyper.size_accounting > static_cast<uint8_t>(SizeAccounting::kProject)) {
    return absl::InvalidArgumentError("unknown size accounting");
  }
  RETURN_IF_ERROR(impl_->net->ImportShards(model->shards));
  impl_->net->SetSizeAccounting(static_cast<SizeAccounting>(hyper.size_accounting));
  Budget budget;
  budget.weight_kb = hyper.weight_budget_kb;
  budget.activation_kb = hyper.activation_budget_kb;
  ASSIGN_OR_RETURN(const bool moved, impl_->net->ProjectToBudget(budget));
  if (!moved) return false;
  std::map<std::string, ModelShard> projected;
  for (ModelShard& s : impl_->net->ExportShards()) projected[s.name] = std::move(s);
  for (const ModelShard& s : model->shards) {
    auto it = projected.find(s.name);
    if (it == projected.end() || it->second.values.size() != s.values.size()) {
      return absl::InternalError(absl::StrCat("the projected model lacks shard ", s.name));
    }
  }
  for (ModelShard& s : model->shards) s.values = std::move(projected[s.name].values);
  return true;
}

std::map<std::string, FrozenCoding> ModelEvaluator::FrozenCodings(const ModelState& model) {
  if (!impl_->net->ImportShards(model.shards).ok()) return {};
  return impl_->net->FrozenCodings();
}

}  // namespace fedge
