#ifndef FEDGE_COMMON_ZMQ_STATUS_H_
#define FEDGE_COMMON_ZMQ_STATUS_H_

// The one place where cppzmq's zmq::error_t becomes absl::Status:
//
//   RETURN_IF_ERROR(CallZmq("binding tcp://*:5555", [&] {
//     socket.bind("tcp://*:5555");
//     return absl::OkStatus();
//   }));
//
// Thread-safe.

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace fedge {

// Maps a ZeroMQ errno to a status code: EAGAIN -> kUnavailable, ETERM ->
// kCancelled, EINVAL / EPROTONOSUPPORT / ENOTSOCK -> kInvalidArgument,
// EADDRINUSE -> kAlreadyExists, EMSGSIZE -> kResourceExhausted,
// EHOSTUNREACH -> kUnavailable, anything else -> kInternal.
absl::Status ZmqErrnoToStatus(int error_number, absl::string_view context);

// Runs `fn` and returns its status; a zmq::error_t it throws becomes
// ZmqErrnoToStatus(e.num(), context) with ZeroMQ's own description appended.
absl::Status CallZmq(absl::string_view context,
                     absl::FunctionRef<absl::Status()> fn);

}  // namespace fedge

#endif  // FEDGE_COMMON_ZMQ_STATUS_H_
