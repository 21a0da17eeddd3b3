#include "coordinator/ops/http_client.h"

#include <httplib.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace fedge {

absl::StatusOr<HttpResponse> HttpGet(const std::string& url, absl::Duration timeout,
                                     size_t max_bytes) {
  // "scheme://host:port" and the path.
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos ||
      !(absl::StartsWith(url, "http://") || absl::StartsWith(url, "https://"))) {
    return absl::InvalidArgumentError(absl::StrCat("'", url, "': expected an http:// or https:// URL"));
  }
  const size_t path_start = url.find('/', scheme_end + 3);
  const std::string origin = url.substr(0, path_start);
  const std::string path = path_start == std::string::npos ? "/" : url.substr(path_start);
  httplib::Client client(origin);
  if (!client.is_valid()) return absl::InvalidArgumentError(absl::StrCat("'", url, "': bad URL"));
  const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(timeout));
  client.set_connection_timeout(ms / 1000, (ms % 1000) * 1000);
  client.set_read_timeout(ms / 1000, (ms % 1000) * 1000);
  client.set_write_timeout(ms / 1000, (ms % 1000) * 1000);

  HttpResponse response;
  bool overflow = false;
  httplib::Result result = client.Get(
      path, httplib::Headers(),
      [&](const httplib::Response& r) {
        response.status = r.status;
        response.content_type = r.get_header_value("Content-Type");
        return true;
      },
      [&](const char* data, size_t length) {
        if (response.body.size() + length > max_bytes) {
          overflow = true;
          return false;
        }
        response.body.append(data, length);
        return true;
      });
  if (overflow) {
    return absl::ResourceExhaustedError(
        absl::StrCat("GET ", url, ": body larger than ", max_bytes, " bytes"));
  }
  if (!result) {
    return absl::UnavailableError(absl::StrCat("GET ", url, ": ", httplib::to_string(result.error())));
  }
  return response;
}

}  // namespace fedge
