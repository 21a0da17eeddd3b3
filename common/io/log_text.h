#ifndef FEDGE_COMMON_LOG_TEXT_H_
#define FEDGE_COMMON_LOG_TEXT_H_

// Text a peer sent (a routing id, a device id that failed validation, a
// failure reason, a Reject's reason) made safe for one log line: control
// characters, quotes and bytes outside printable ASCII are C-escaped
// ("\n" becomes the two characters '\' 'n', 0xFF becomes "\377"), and anything past `max_bytes`
// of the input is cut with "...". A peer can then neither forge a log line
// nor flood one.
//
//   std::fprintf(stderr, "[coordinator] %s: ...\n", LogText(peer).c_str());
//
// Thread-safe.

#include <cstddef>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"

namespace fedge {

inline std::string LogText(absl::string_view text, size_t max_bytes = 96) {
  const bool cut = text.size() > max_bytes;
  std::string out = absl::CEscape(cut ? text.substr(0, max_bytes) : text);
  if (cut) out += "...";
  return out;
}

}  // namespace fedge

#endif  // FEDGE_COMMON_LOG_TEXT_H_
