#include "common/status/capnp_status.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "kj/exception.h"

namespace fedge {

absl::Status CallCapnp(absl::string_view context,
                       absl::FunctionRef<absl::Status()> fn) {
  try {
    return fn();
  } catch (const kj::Exception& e) {
    const std::string message =
        absl::StrCat(context, ": ", e.getDescription().cStr());
    switch (e.getType()) {
      case kj::Exception::Type::OVERLOADED:
        return absl::ResourceExhaustedError(message);
      case kj::Exception::Type::DISCONNECTED:
        return absl::UnavailableError(message);
      case kj::Exception::Type::UNIMPLEMENTED:
        return absl::UnimplementedError(message);
      case kj::Exception::Type::FAILED:
        break;
    }
    return absl::InvalidArgumentError(message);
  }
}

}  // namespace fedge
