#include "models/quant/model_shards.h"

#include <ATen/ATen.h>

#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/status/torch_status.h"

namespace fedge {

std::vector<ModelShard> ExportShards(const std::vector<NamedTensor>& named_tensors) {
  std::vector<ModelShard> out;
  for (const NamedTensor& named : named_tensors) {
    const at::Tensor t = named.tensor->detach().to(at::kFloat).contiguous();
    ModelShard shard;
    shard.name = named.name;
    shard.layer = named.layer;
    for (int64_t d : t.sizes()) shard.shape.push_back(static_cast<uint32_t>(d));
    shard.values.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    out.push_back(std::move(shard));
  }
  return out;
}

absl::Status ImportShards(const std::vector<NamedTensor>& named_tensors,
                          const std::vector<ModelShard>& shards) {
  std::map<std::string, at::Tensor*> by_name;
  for (const NamedTensor& named : named_tensors) by_name[named.name] = named.tensor;
  for (const ModelShard& shard : shards) {
    auto it = by_name.find(shard.name);
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(absl::StrCat("the network has no tensor '", shard.name, "'"));
    }
    if (static_cast<int64_t>(shard.values.size()) != it->second->numel()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shard '", shard.name, "' has ", shard.values.size(), " values, the tensor ",
          it->second->numel()));
    }
  }
  return CallTorch("loading shards", [&] {
    at::NoGradGuard no_grad;
    for (const ModelShard& shard : shards) {
      at::Tensor* t = by_name[shard.name];
      const at::Tensor src = at::from_blob(const_cast<float*>(shard.values.data()),
                                           t->sizes(), at::TensorOptions().dtype(at::kFloat));
      t->copy_(src);
    }
    return absl::OkStatus();
  });
}

}  // namespace fedge
