#include "common/status/torch_status.h"

#include <exception>
#include <new>
#include <string>

#include "absl/strings/str_cat.h"
#include "c10/util/Exception.h"

namespace fedge {
namespace {

// c10::Error::what() carries a C++ backtrace after the first line; the
// message without it is what an operator needs.
std::string FirstLine(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

}  // namespace

absl::Status CallTorch(absl::string_view context,
                       absl::FunctionRef<absl::Status()> fn) {
  try {
    return fn();
  } catch (const c10::ValueError& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": ", FirstLine(e.msg())));
  } catch (const c10::IndexError& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": ", FirstLine(e.msg())));
  } catch (const c10::TypeError& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": ", FirstLine(e.msg())));
  } catch (const c10::NotImplementedError& e) {
    return absl::UnimplementedError(
        absl::StrCat(context, ": ", FirstLine(e.msg())));
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat(context, ": ", FirstLine(e.msg())));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat(context, ": out of memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(context, ": ", e.what()));
  }
}

}  // namespace fedge
