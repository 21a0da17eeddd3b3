#ifndef FEDGE_COMMON_TORCH_STATUS_H_
#define FEDGE_COMMON_TORCH_STATUS_H_

// The one place where LibTorch's exceptions (c10::Error and its subclasses)
// become absl::Status. Code that calls LibTorch wraps the call:
//
//   RETURN_IF_ERROR(CallTorch("loading shard conv1", [&] {
//     weights = torch::zeros({64, 3, 3, 3});
//     return absl::OkStatus();
//   }));
//
// The header does not include LibTorch, so callers that only need the guard
// stay cheap to compile. Thread-safe.

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace fedge {

// Runs `fn` and returns its status; a c10::Error, std::bad_alloc or other
// std::exception it throws becomes a status whose message starts with
// `context`. c10's ValueError, IndexError and TypeError map to
// kInvalidArgument, NotImplementedError to kUnimplemented, allocation failure
// to kResourceExhausted, anything else to kInternal.
absl::Status CallTorch(absl::string_view context,
                       absl::FunctionRef<absl::Status()> fn);

}  // namespace fedge

#endif  // FEDGE_COMMON_TORCH_STATUS_H_
