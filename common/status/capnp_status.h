#ifndef FEDGE_COMMON_CAPNP_STATUS_H_
#define FEDGE_COMMON_CAPNP_STATUS_H_

// The one place where Cap'n Proto's kj::Exception becomes absl::Status.
// Reading a message from the network happens inside the guard, so a
// malformed frame turns into a status naming what was being read:
//
//   RETURN_IF_ERROR(CallCapnp("decoding Register", [&] {
//     auto reader = message.getRoot<wire::Envelope>();
//     ...
//     return absl::OkStatus();
//   }));
//
// Thread-safe.

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace fedge {

// Runs `fn` and returns its status; a kj::Exception it throws becomes a
// status prefixed with `context`: FAILED (malformed or out-of-limit input) maps
// to kInvalidArgument, OVERLOADED to kResourceExhausted, DISCONNECTED to
// kUnavailable, UNIMPLEMENTED to kUnimplemented.
absl::Status CallCapnp(absl::string_view context,
                       absl::FunctionRef<absl::Status()> fn);

}  // namespace fedge

#endif  // FEDGE_COMMON_CAPNP_STATUS_H_
