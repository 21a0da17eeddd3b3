#ifndef FEDGE_COMMON_STATUS_MACROS_H_
#define FEDGE_COMMON_STATUS_MACROS_H_

// Early-return helpers for absl::Status and absl::StatusOr<T>. The packaged
// Abseil (20220623) ships none.
//
//   absl::StatusOr<Model> Load(const std::string& path) {
//     RETURN_IF_ERROR(CheckReadable(path));
//     ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
//     return Parse(bytes);
//   }

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"

#define FEDGE_STATUS_CONCAT_INNER_(a, b) a##b
#define FEDGE_STATUS_CONCAT_(a, b) FEDGE_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing
// function when it is not OK.
#define RETURN_IF_ERROR(expr)                                   \
  do {                                                          \
    const ::absl::Status fedge_status_ = (expr);                \
    if (!fedge_status_.ok()) return fedge_status_;              \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status,
// otherwise moves the value into `lhs`, which may be a declaration.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  FEDGE_ASSIGN_OR_RETURN_IMPL_(      \
      FEDGE_STATUS_CONCAT_(fedge_statusor_, __LINE__), lhs, rexpr)

#define FEDGE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

namespace fedge {

// Prefixes a non-OK status's message with `context`, keeping its code and
// payloads (a RejectReason tag among them). An OK status passes through
// unchanged.
inline absl::Status Annotate(const absl::Status& status,
                             absl::string_view context) {
  if (status.ok()) return status;
  std::string message(context);
  message.append(": ");
  message.append(status.message().data(), status.message().size());
  absl::Status annotated(status.code(), message);
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    annotated.SetPayload(url, payload);
  });
  return annotated;
}

}  // namespace fedge

#endif  // FEDGE_COMMON_STATUS_MACROS_H_
