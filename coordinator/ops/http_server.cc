#include "coordinator/ops/http_server.h"

#include <httplib.h>

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace fedge {
namespace {

void Fill(const HttpResponse& from, httplib::Response& to) {
  to.status = from.status;
  to.set_header("Cache-Control", "no-store");
  to.set_content(from.body, from.content_type.c_str());
}

// "host:port" or "port" (all interfaces).
bool ParseListenAddress(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == 0) return false;
  *host = colon == std::string::npos ? "0.0.0.0" : address.substr(0, colon);
  const std::string port_text = colon == std::string::npos ? address : address.substr(colon + 1);
  return absl::SimpleAtoi(port_text, port) && *port >= 0 && *port <= 65535;
}

}  // namespace

absl::Status ValidateListenAddress(const std::string& address, const std::string& flag) {
  std::string host;
  int port;
  if (!ParseListenAddress(address, &host, &port)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, "='", address, "': expected host:port or port, with a port in 0..65535"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options) {
  if (options.threads < 1 || options.threads > 64) {
    return absl::InvalidArgumentError("http server threads must be in 1..64");
  }
  std::string host;
  int port = 0;
  if (!ParseListenAddress(options.address, &host, &port)) {
    return ValidateListenAddress(options.address, "address");
  }

  std::unique_ptr<HttpServer> server(new HttpServer());
  server->options_ = std::move(options);
  server->server_ = std::make_unique<httplib::Server>();
  httplib::Server& http = *server->server_;
  const int threads = server->options_.threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_read_timeout(10, 0);
  http.set_write_timeout(10, 0);
  http.set_keep_alive_max_count(10);
  // SO_REUSEADDR only: without SO_REUSEPORT a second server on a port in use
  // fails to bind instead of silently sharing it.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof(yes));
  });
  for (const auto& [path, handler] : server->options_.handlers) {
    // GET routes answer HEAD too (without the body).
    http.Get(path, [handler = handler](const httplib::Request&, httplib::Response& res) {
      Fill(handler(), res);
    });
  }
  std::string paths;
  for (const auto& [path, unused] : server->options_.handlers) absl::StrAppend(&paths, " ", path);
  const auto refuse = [](const httplib::Request&, httplib::Response& res) {
    Fill({405, "text/plain; charset=utf-8", "only GET and HEAD\n"}, res);
  };
  http.Post(".*", refuse);
  http.Put(".*", refuse);
  http.Patch(".*", refuse);
  http.Delete(".*", refuse);
  http.set_error_handler([paths](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404) {
      Fill({404, "text/plain; charset=utf-8", absl::StrCat("not found; try", paths, "\n")}, res);
    }
  });

  server->port_ = port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, port) ? port : -1);
  if (server->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve HTTP on ", server->options_.address,
                                               ": ", std::strerror(errno)));
  }
  server->thread_ = std::thread([&http] { http.listen_after_bind(); });
  // Until the loop runs, stop() would not reach it: wait for it.
  for (int i = 0; i < 5000 && !http.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return server;
}

HttpServer::~HttpServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace fedge
