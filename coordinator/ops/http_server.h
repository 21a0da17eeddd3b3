#ifndef FEDGE_COMMON_HTTP_SERVER_H_
#define FEDGE_COMMON_HTTP_SERVER_H_

// A small HTTP server for operators' endpoints (metrics, health), on
// cpp-httplib: the caller maps exact paths to handlers; the server's worker
// threads call them, so handlers must be thread-safe. Only GET and HEAD are answered;
// other paths get 404 and other methods 405.
//
//   HttpServerOptions options;
//   options.address = "0.0.0.0:9090";
//   options.handlers["/metrics"] = [&] { return HttpResponse{200, kText, Render()}; };
//   ASSIGN_OR_RETURN(std::unique_ptr<HttpServer> server, HttpServer::Start(options));
//
// Stops (joining the server's threads) when destroyed.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace fedge {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

struct HttpServerOptions {
  // "host:port" or "port"; port 0 picks a free one (see HttpServer::port).
  std::string address = "127.0.0.1:0";
  int threads = 2;
  std::map<std::string, std::function<HttpResponse()>> handlers;
};

class HttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The port it listens on (the chosen one when asked for port 0).
  int port() const { return port_; }

 private:
  HttpServer() = default;

  HttpServerOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// Checks "host:port" / "port" with a port in [0, 65535]; the error names the
// flag.
absl::Status ValidateListenAddress(const std::string& address, const std::string& flag);

}  // namespace fedge

#endif  // FEDGE_COMMON_HTTP_SERVER_H_
