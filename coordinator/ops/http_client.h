#ifndef FEDGE_COMMON_HTTP_CLIENT_H_
#define FEDGE_COMMON_HTTP_CLIENT_H_

// A blocking HTTP GET on cpp-httplib, for operators' tools (the status command)
// and tests that read the coordinator's endpoints.
//
//   ASSIGN_OR_RETURN(HttpResponse r, HttpGet("http://127.0.0.1:9090/metrics", absl::Seconds(5)));

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/ops/http_server.h"

namespace fedge {

// Any HTTP status comes back as a response; only transport failures
// (refused, timed out, a body over `max_bytes`) are errors.
absl::StatusOr<HttpResponse> HttpGet(const std::string& url, absl::Duration timeout,
                                     size_t max_bytes = 16 << 20);

}  // namespace fedge

#endif  // FEDGE_COMMON_HTTP_CLIENT_H_
