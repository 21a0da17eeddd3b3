#include "common/http_server.h"

#include <civetweb.h>

#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace fedge {
namespace {

void Reply(struct mg_connection* conn, const HttpResponse& response, bool head) {
  mg_response_header_start(conn, response.status);
  mg_response_header_add(conn, "Content-Type", response.content_type.c_str(), -1);
  const std::string length = std::to_string(response.body.size());
  mg_response_header_add(conn, "Content-Length", length.c_str(), -1);
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  mg_response_header_send(conn);
  if (!head && !response.body.empty()) mg_write(conn, response.body.data(), response.body.size());
}

// civetweb logs to stderr by default in some builds; keep its messages but
// mark where they come from.
int LogMessage(const struct mg_connection*, const char* message) {
  std::fprintf(stderr, "[http] %s\n", message);
  return 1;
}

}  // namespace

absl::Status ValidateListenAddress(const std::string& address, const std::string& flag) {
  const size_t colon = address.rfind(':');
  const std::string port_text = colon == std::string::npos ? address : address.substr(colon + 1);
  int port = -1;
  if (!absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535 ||
      (colon != std::string::npos && colon == 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, "='", address, "': expected host:port or port, with a port in 0..65535"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options) {
  if (absl::Status valid = ValidateListenAddress(options.address, "address"); !valid.ok()) {
    return valid;
  }
  if (options.threads < 1 || options.threads > 64) {
    return absl::InvalidArgumentError("http server threads must be in 1..64");
  }
  static const unsigned initialized = mg_init_library(0);
  (void)initialized;
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->options_ = std::move(options);
  const std::string threads = std::to_string(server->options_.threads);
  const char* config[] = {"listening_ports", server->options_.address.c_str(),
                          "num_threads",     threads.c_str(),
                          "request_timeout_ms", "10000",
                          nullptr};
  struct mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  callbacks.log_message = LogMessage;
  struct mg_init_data init;
  init.callbacks = &callbacks;
  init.user_data = nullptr;
  init.configuration_options = config;
  unsigned code = 0;
  char text[256] = {0};
  struct mg_error_data error;
  error.code = &code;
  error.text = text;
  error.text_buffer_size = sizeof(text);
  server->context_ = mg_start2(&init, &error);
  if (server->context_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot serve HTTP on ",
                                               server->options_.address, ": ", text));
  }
  struct mg_server_port ports[4];
  std::memset(ports, 0, sizeof(ports));
  const int n = mg_get_server_ports(server->context_, 4, ports);
  if (n < 1) return absl::InternalError("HTTP server started without a listening port");
  server->port_ = ports[0].port;
  // One catch-all handler, so that unknown paths get a plain 404 from us.
  mg_set_request_handler(server->context_, "/", &HttpServer::Handle, server.get());
  return server;
}

int HttpServer::Handle(struct mg_connection* conn, void* self) {
  const HttpServer* server = static_cast<const HttpServer*>(self);
  const struct mg_request_info* info = mg_get_request_info(conn);
  const bool head = std::strcmp(info->request_method, "HEAD") == 0;
  if (!head && std::strcmp(info->request_method, "GET") != 0) {
    Reply(conn, {405, "text/plain; charset=utf-8", "only GET and HEAD\n"}, false);
    return 405;
  }
  auto it = server->options_.handlers.find(info->local_uri != nullptr ? info->local_uri : "");
  if (it == server->options_.handlers.end()) {
    std::string paths;
    for (const auto& [path, unused] : server->options_.handlers) absl::StrAppend(&paths, " ", path);
    Reply(conn, {404, "text/plain; charset=utf-8", absl::StrCat("not found; try", paths, "\n")},
          head);
    return 404;
  }
  const HttpResponse response = it->second();
  Reply(conn, response, head);
  return response.status;
}

HttpServer::~HttpServer() {
  if (context_ != nullptr) mg_stop(context_);
}

}  // namespace fedge
