#include "common/status/zmq_status.h"

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "zmq.hpp"

namespace fedge {

absl::Status ZmqErrnoToStatus(int error_number, absl::string_view context) {
  const std::string message =
      absl::StrCat(context, ": ", zmq_strerror(error_number));
  switch (error_number) {
    case EAGAIN:
    case EHOSTUNREACH:
      return absl::UnavailableError(message);
    case ETERM:
      return absl::CancelledError(message);
    case EINVAL:
    case EPROTONOSUPPORT:
    case ENOTSOCK:
      return absl::InvalidArgumentError(message);
    case EADDRINUSE:
      return absl::AlreadyExistsError(message);
    case EMSGSIZE:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status CallZmq(absl::string_view context,
                     absl::FunctionRef<absl::Status()> fn) {
  try {
    return fn();
  } catch (const zmq::error_t& e) {
    return ZmqErrnoToStatus(e.num(), context);
  }
}

}  // namespace fedge
