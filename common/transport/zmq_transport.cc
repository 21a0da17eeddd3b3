#include "common/transport/zmq_transport.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cstdio>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/io/file_util.h"
#include "common/status/status_macros.h"
#include "common/status/zmq_status.h"
#include "zmq.hpp"

namespace fedge {
namespace {

constexpr char kZapEndpoint[] = "inproc://zeromq.zap.01";
constexpr size_t kZ85KeyLength = 40;

bool IsZ85Key(absl::string_view key) {
  if (key.size() != kZ85KeyLength) return false;
  uint8_t raw[32];
  return zmq_z85_decode(raw, std::string(key).c_str()) != nullptr;
}

absl::Status CheckKey(absl::string_view what, absl::string_view key) {
  if (!IsZ85Key(key)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not a 40-character Z85 CURVE key"));
  }
  return absl::OkStatus();
}

std::string Z85(const uint8_t* raw32) {
  char out[kZ85KeyLength + 1];
  zmq_z85_encode(out, raw32, 32);
  return out;
}

// 16 random hex digits: with router handover on, a connection that knew a
// device's routing id could take its route; nobody can guess this one.
std::string RouteNonce() {
  std::random_device device;
  const uint64_t nonce = (static_cast<uint64_t>(device()) << 32) ^ device();
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(nonce));
  return text;
}

int LinkTimeoutMs(absl::Duration timeout) {
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(timeout), 2000, 3600000));
}

// ZeroMQ heartbeats when `timeout` is positive; otherwise the kernel's TCP
// keepalive (probes after 30 s idle, every 10 s, 3 unanswered: a dead peer's
// connection is dropped after about a minute). libzmq keeps every
// connection's heartbeat timers in one ordered map per I/O thread and
// cancels them by a linear search on every frame received, so with
// thousands of connections the I/O thread does little else and stops
// accepting: large fleets run without them.
void SetLinkLiveness(zmq::socket_t& socket, absl::Duration timeout) {
  if (timeout > absl::ZeroDuration()) {
    socket.set(zmq::sockopt::heartbeat_ivl, 2000);
    socket.set(zmq::sockopt::heartbeat_timeout, LinkTimeoutMs(timeout));
  } else {
    socket.set(zmq::sockopt::tcp_keepalive, 1);
    socket.set(zmq::sockopt::tcp_keepalive_idle, 30);
    socket.set(zmq::sockopt::tcp_keepalive_intvl, 10);
    socket.set(zmq::sockopt::tcp_keepalive_cnt, 3);
  }
}

int TimeoutMs(absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(timeout) + 1, 1 << 30));
}

// Waits up to `timeout` for a multipart message and receives all its parts;
// an empty vector when none arrived.
absl::Status PollParts(zmq::socket_t& socket, absl::Duration timeout,
                       std::vector<zmq::message_t>* parts) {
  // With nothing to wait for, the non-blocking receive below asks the
  // socket's queue without the poll system call (an agent loop looks many
  // times a second, and a load generator's thousands of agents each do).
  if (timeout > absl::ZeroDuration()) {
    zmq::pollitem_t item = {socket.handle(), 0, ZMQ_POLLIN, 0};
    // A signal (SIGTERM) interrupting the wait is no error: nothing arrived.
    if (zmq_poll(&item, 1, TimeoutMs(timeout)) < 0) {
      if (zmq_errno() == EINTR) return absl::OkStatus();
      return ZmqErrnoToStatus(zmq_errno(), "polling");
    }
    if (!(item.revents & ZMQ_POLLIN)) return absl::OkStatus();
  }
  zmq::message_t part;
  if (!socket.recv(part, zmq::recv_flags::dontwait)) return absl::OkStatus();
  parts->push_back(std::move(part));
  while (parts->back().more()) {
    zmq::message_t next;
    (void)socket.recv(next, zmq::recv_flags::none);
    parts->push_back(std::move(next));
  }
  return absl::OkStatus();
}

// Never blocks: with ZMQ_ROUTER_MANDATORY a peer whose queue is at its
// high-water mark makes the first frame fail with EAGAIN (the message is not
// queued: kResourceExhausted), an unknown peer with EHOSTUNREACH
// (kUnavailable). Once the first frame is queued, ZeroMQ queues the rest of
// the message whole.
// Shared frames go as ZeroMQ zero-copy messages that hold a reference to
// their buffer until the I/O thread is done with them.
void ReleaseSharedFrame(void*, void* hint) {
  delete static_cast<std::shared_ptr<const std::string>*>(hint);
}

absl::Status SendFrames(zmq::socket_t& socket, const std::string* routing,
                        const std::vector<std::string>& frames,
                        const std::vector<SharedFrame>& shared = {}) {
  return CallZmq("sending", [&]() -> absl::Status {
    std::vector<absl::string_view> parts;
    if (routing != nullptr) parts.push_back(*routing);
    parts.insert(parts.end(), frames.begin(), frames.end());
    const size_t total = parts.size() + shared.size();
    for (size_t i = 0; i < total; ++i) {
      const auto more = i + 1 < total ? zmq::send_flags::sndmore : zmq::send_flags::none;
      zmq::message_t part;
      if (i < parts.size()) {
        part.rebuild(parts[i].data(), parts[i].size());
      } else {
        const SharedFrame& frame = shared[i - parts.size()];
        part.rebuild(const_cast<char*>(frame.buffer->data() + frame.offset), frame.size,
                     ReleaseSharedFrame, new std::shared_ptr<const std::string>(frame.buffer));
      }
      if (!socket.send(part, more | zmq::send_flags::dontwait) && i == 0) {
        return absl::ResourceExhaustedError("the peer's queue is full (it is not reading)");
      }
    }
    return absl::OkStatus();
  });
}

}  // namespace

absl::StatusOr<CurveKeyPair> GenerateCurveKeyPair() {
  char public_key[kZ85KeyLength + 1];
  char secret_key[kZ85KeyLength + 1];
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return ZmqErrnoToStatus(zmq_errno(), "generating a CURVE key pair (is libzmq built with CURVE?)");
  }
  return CurveKeyPair{public_key, secret_key};
}

absl::Status WriteKeyPair(const CurveKeyPair& keys, const std::string& prefix) {
  RETURN_IF_ERROR(WriteFileAtomically(prefix + ".key", keys.secret_key + "\n"));
  chmod((prefix + ".key").c_str(), 0600);
  RETURN_IF_ERROR(WriteFileAtomically(prefix + ".pub", keys.public_key + "\n"));
  chmod((prefix + ".pub").c_str(), 0644);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadPublicKey(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path, 4096));
  const std::string key(absl::StripAsciiWhitespace(text));
  RETURN_IF_ERROR(CheckKey(path, key));
  return key;
}

absl::StatusOr<CurveKeyPair> ReadKeyPair(const std::string& prefix) {
  CurveKeyPair keys;
  ASSIGN_OR_RETURN(keys.public_key, ReadPublicKey(prefix + ".pub"));
  ASSIGN_OR_RETURN(keys.secret_key, ReadPublicKey(prefix + ".key"));
  // zmq_curve_public writes the Z85 text of the key: 40 characters and a NUL.
  char derived[kZ85KeyLength + 1] = {};
  if (zmq_curve_public(derived, keys.secret_key.c_str()) != 0 ||
      std::string(derived) != keys.public_key) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, ".pub does not belong to ", prefix, ".key"));
  }
  return keys;
}

absl::StatusOr<Allowlist> ParseAllowlistWithRoles(const std::string& text) {
  Allowlist allowlist;
  std::set<std::string> agents;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    // '#' is a Z85 character, so only a '#' that starts a word starts a comment.
    for (size_t at = line.find('#'); at != absl::string_view::npos; at = line.find('#', at + 1)) {
      if (at == 0 || line[at - 1] == ' ' || line[at - 1] == '\t') {
        line = line.substr(0, at);
        break;
      }
    }
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() != 2 && fields.size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          "allowlist line ", line_number, ": expected 'device_id public_key [agent|relay]'"));
    }
    if (fields.size() == 3 && fields[2] != "relay" && fields[2] != "agent") {
      return absl::InvalidArgumentError(absl::StrCat("allowlist line ", line_number, ": role '",
                                                     fields[2], "' is not agent or relay"));
    }
    RETURN_IF_ERROR(Annotate(CheckKey("public key", fields[1]),
                             absl::StrCat("allowlist line ", line_number)));
    const std::string id(fields[0]);
    if (!allowlist.keys.emplace(std::string(fields[1]), id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("allowlist line ", line_number, ": key enrolled twice"));
    }
    const bool relay = fields.size() == 3 && fields[2] == "relay";
    (relay ? allowlist.relays : agents).insert(id);
    if (allowlist.relays.count(id) != 0 && agents.count(id) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "allowlist line ", line_number, ": '", id, "' enrolled both as an agent and as a relay"));
    }
  }
  return allowlist;
}

absl::StatusOr<std::map<std::string, std::string>> ParseAllowlist(const std::string& text) {
  ASSIGN_OR_RETURN(Allowlist allowlist, ParseAllowlistWithRoles(text));
  return std::move(allowlist.keys);
}

// --- server ---------------------------------------------------------------

struct ZmqServerTransport::Impl {
  zmq::context_t context{1};
  zmq::socket_t socket;
  zmq::socket_t zap_socket;  // owned by the ZAP thread after start
  std::thread zap_thread;
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> denied{0};
  std::map<std::string, std::string> allowlist;

  // ZAP (RFC 27): admit CURVE clients whose key is enrolled; the reply's
  // user id is the device id the key is enrolled under.
  void ServeZap() {
    while (!stopping) {
      try {
        std::vector<zmq::message_t> request;
        (void)PollParts(zap_socket, absl::Milliseconds(100), &request);
        if (request.empty()) continue;
        std::string status = "400", text = "denied", user;
        if (request.size() >= 7 && request[5].to_string() == "CURVE" &&
            request[6].size() == 32) {
          const std::string key = Z85(static_cast<const uint8_t*>(request[6].data()));
          auto it = allowlist.find(key);
          if (it != allowlist.end()) {
            status = "200";
            text = "OK";
            user = it->second;
          } else {
            text = "unknown public key";
          }
        } else {
          text = "CURVE required";
        }
        if (status != "200") {
          ++denied;
          std::fprintf(stderr, "[zap] refused a connection: %s\n", text.c_str());
        }
        const std::string request_id = request.size() > 1 ? request[1].to_string() : "";
        std::vector<std::string> reply = {"1.0", request_id, status, text, user, ""};
        (void)SendFrames(zap_socket, nullptr, reply);
      } catch (const zmq::error_t&) {
        return;  // context terminated
      }
    }
  }
};

ZmqServerTransport::ZmqServerTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ZmqServerTransport::~ZmqServerTransport() {
  impl_->stopping = true;
  if (impl_->zap_thread.joinable()) impl_->zap_thread.join();
  impl_->zap_socket.close();
  impl_->socket.close();
}

absl::StatusOr<std::unique_ptr<ZmqServerTransport>> ZmqServerTransport::Create(
    const ZmqServerOptions& options) {
  auto impl = std::make_unique<Impl>();
  RETURN_IF_ERROR(CallZmq(absl::StrCat("binding ", options.endpoint), [&]() -> absl::Status {
    if (options.curve.has_value()) {
      RETURN_IF_ERROR(CheckKey("server public key", options.curve->keys.public_key));
      RETURN_IF_ERROR(CheckKey("server secret key", options.curve->keys.secret_key));
      impl->allowlist = options.curve->allowlist;
      // The ZAP handler must exist before the first client connects.
      impl->zap_socket = zmq::socket_t(impl->context, zmq::socket_type::rep);
      impl->zap_socket.set(zmq::sockopt::linger, 0);
      // Thousands of agents handshaking at once queue that many requests.
      impl->zap_socket.set(zmq::sockopt::rcvhwm, 0);
      impl->zap_socket.set(zmq::sockopt::sndhwm, 0);
      impl->zap_socket.bind(kZapEndpoint);
    }
    impl->socket = zmq::socket_t(impl->context, zmq::socket_type::router);
    impl->socket.set(zmq::sockopt::linger, 0);
    impl->socket.set(zmq::sockopt::router_mandatory, 1);
    // A restarted agent reconnecting under its id takes over the old route.
    impl->socket.set(zmq::sockopt::router_handover, 1);
    impl->socket.set(zmq::sockopt::maxmsgsize, options.max_message_bytes);
    impl->socket.set(zmq::sockopt::sndhwm, options.send_queue_messages);
    impl->socket.set(zmq::sockopt::rcvhwm, 100000);
    // Connections waiting for accept (the kernel caps it at somaxconn): at
    // the default of 100, a fleet connecting at once overflows the queue and
    // its SYNs back off for tens of seconds.
    impl->socket.set(zmq::sockopt::backlog, 4096);
    SetLinkLiveness(impl->socket, options.link_timeout);
    if (options.curve.has_value()) {
      impl->socket.set(zmq::sockopt::curve_server, 1);
      impl->socket.set(zmq::sockopt::curve_secretkey, options.curve->keys.secret_key);
      impl->socket.set(zmq::sockopt::zap_domain, "fedge");
    }
    impl->socket.bind(options.endpoint);
    return absl::OkStatus();
  }));
  if (options.curve.has_value()) {
    Impl* raw = impl.get();
    impl->zap_thread = std::thread([raw] { raw->ServeZap(); });
  } else {
    std::fprintf(stderr,
                 "WARNING: coordinator transport on %s is PLAINTEXT: no encryption, no "
                 "authentication. Use it only for loopback development.\n",
                 options.endpoint.c_str());
  }
  return std::unique_ptr<ZmqServerTransport>(new ZmqServerTransport(std::move(impl)));
}

std::string ZmqServerTransport::bound_endpoint() const {
  return impl_->socket.get(zmq::sockopt::last_endpoint);
}

int64_t ZmqServerTransport::denied() const { return impl_->denied; }

absl::Status ZmqServerTransport::Send(Packet packet) {
  absl::Status sent = SendFrames(impl_->socket, &packet.peer, packet.frames, packet.shared_frames);
  if (absl::IsUnavailable(sent)) {
    return absl::UnavailableError(absl::StrCat("peer is not connected: ", sent.message()));
  }
  return sent;
}

absl::StatusOr<std::optional<Packet>> ZmqServerTransport::Receive(absl::Duration timeout) {
  std::optional<Packet> out;
  RETURN_IF_ERROR(CallZmq("receiving", [&]() -> absl::Status {
    std::vector<zmq::message_t> parts;
    RETURN_IF_ERROR(PollParts(impl_->socket, timeout, &parts));
    if (parts.empty()) return absl::OkStatus();
    Packet packet;
    packet.peer = parts[0].to_string();
    if (parts.size() > 1) {
      // Absent (NULL) on plaintext links; cppzmq's gets() would throw.
      const char* user = zmq_msg_gets(parts[1].handle(), "User-Id");
      if (user != nullptr) packet.authenticated_id = user;
    }
    for (size_t i = 1; i < parts.size(); ++i) packet.frames.push_back(parts[i].to_string());
    out = std::move(packet);
    return absl::OkStatus();
  }));
  return out;
}

// --- client ---------------------------------------------------------------

struct ZmqContext::State {
  zmq::context_t context;
};

absl::StatusOr<std::shared_ptr<ZmqContext>> ZmqContext::Create(int io_threads, int max_sockets) {
  if (io_threads < 1 || max_sockets < 2) {
    return absl::InvalidArgumentError(absl::StrCat("a shared ZeroMQ context needs at least one I/O thread (",
                                                   io_threads, ") and two sockets (", max_sockets, ")"));
  }
  std::shared_ptr<ZmqContext> out(new ZmqContext());
  if (zmq_ctx_set(out->state_->context.handle(), ZMQ_IO_THREADS, io_threads) != 0 ||
      zmq_ctx_set(out->state_->context.handle(), ZMQ_MAX_SOCKETS, max_sockets) != 0) {
    return ZmqErrnoToStatus(zmq_errno(), "configuring a ZeroMQ context");
  }
  return out;
}

ZmqContext::ZmqContext() : state_(std::make_unique<State>()) {}
ZmqContext::~ZmqContext() = default;

struct ZmqClientTransport::Impl {
  // The shared context outlives the sockets (members are destroyed in
  // reverse order).
  std::shared_ptr<ZmqContext> shared;
  std::unique_ptr<zmq::context_t> own;
  zmq::socket_t socket;
  zmq::socket_t monitor;  // socket events: handshakes with the coordinator
  int64_t connections = 0;

  // Counts the handshakes the monitor reported since the last call.
  void DrainEvents() {
    if (!monitor) return;
    while (true) {
      zmq::message_t event;
      if (!monitor.recv(event, zmq::recv_flags::dontwait)) return;
      while (event.more()) {
        zmq::message_t rest;
        if (!monitor.recv(rest, zmq::recv_flags::dontwait)) break;
        if (!rest.more()) break;
      }
      uint16_t id = 0;
      if (event.size() >= 2) std::memcpy(&id, event.data(), 2);
      if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) ++connections;
    }
  }
};

ZmqClientTransport::ZmqClientTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ZmqClientTransport::~ZmqClientTransport() {
  if (impl_->monitor) impl_->monitor.close();
  impl_->socket.close();
}

int64_t ZmqClientTransport::connections() const { return impl_->connections; }

absl::StatusOr<std::unique_ptr<ZmqClientTransport>> ZmqClientTransport::Create(
    const ZmqClientOptions& options) {
  if (options.identity.empty()) {
    return absl::InvalidArgumentError("the agent's transport needs its device id");
  }
  auto impl = std::make_unique<Impl>();
  RETURN_IF_ERROR(CallZmq(absl::StrCat("connecting to ", options.endpoint), [&]() -> absl::Status {
    impl->shared = options.context;
    if (impl->shared == nullptr) impl->own = std::make_unique<zmq::context_t>(1);
    zmq::context_t& context = impl->shared != nullptr ? impl->shared->state_->context : *impl->own;
    impl->socket = zmq::socket_t(context, zmq::socket_type::dealer);
    impl->socket.set(zmq::sockopt::linger,
                     static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(options.linger))));
    impl->socket.set(zmq::sockopt::routing_id, options.identity + "/" + RouteNonce());
    impl->socket.set(zmq::sockopt::maxmsgsize, options.max_message_bytes);
    impl->socket.set(zmq::sockopt::reconnect_ivl, 200);
    impl->socket.set(zmq::sockopt::reconnect_ivl_max, 5000);
    SetLinkLiveness(impl->socket, options.link_timeout);
    // Don't queue messages for a peer that is not there: a stale Register
    // delivered after a reconnect would only confuse the coordinator.
    impl->socket.set(zmq::sockopt::immediate, 1);
    if (options.curve.has_value()) {
      RETURN_IF_ERROR(CheckKey("server public key", options.curve->server_public_key));
      RETURN_IF_ERROR(CheckKey("agent public key", options.curve->keys.public_key));
      RETURN_IF_ERROR(CheckKey("agent secret key", options.curve->keys.secret_key));
      impl->socket.set(zmq::sockopt::curve_serverkey, options.curve->server_public_key);
      impl->socket.set(zmq::sockopt::curve_publickey, options.curve->keys.public_key);
      impl->socket.set(zmq::sockopt::curve_secretkey, options.curve->keys.secret_key);
    }
    // Before connecting, so the first handshake is seen.
    if (options.monitor_connections) {
      const std::string monitor = absl::StrCat("inproc://fedge-agent-monitor-",
                                               reinterpret_cast<uintptr_t>(impl.get()));
      if (zmq_socket_monitor(impl->socket.handle(), monitor.c_str(),
                             ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0) {
        return ZmqErrnoToStatus(zmq_errno(), "monitoring the agent's socket");
      }
      impl->monitor = zmq::socket_t(context, zmq::socket_type::pair);
      impl->monitor.set(zmq::sockopt::linger, 0);
      impl->monitor.connect(monitor);
    } else {
      impl->connections = 1;
    }
    impl->socket.connect(options.endpoint);
    return absl::OkStatus();
  }));
  return std::unique_ptr<ZmqClientTransport>(new ZmqClientTransport(std::move(impl)));
}

absl::Status ZmqClientTransport::Send(Packet packet) {
  FlattenSharedFrames(&packet);
  // With ZMQ_IMMEDIATE a send while disconnected would block: don't wait.
  return CallZmq("sending to the coordinator", [&]() -> absl::Status {
    for (size_t i = 0; i < packet.frames.size(); ++i) {
      const auto more = i + 1 < packet.frames.size() ? zmq::send_flags::sndmore
                                                     : zmq::send_flags::none;
      auto sent = impl_->socket.send(
          zmq::message_t(packet.frames[i].data(), packet.frames[i].size()),
          more | zmq::send_flags::dontwait);
      if (!sent) return absl::UnavailableError("not connected to the coordinator");
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::optional<Packet>> ZmqClientTransport::Receive(absl::Duration timeout) {
  std::optional<Packet> out;
  RETURN_IF_ERROR(CallZmq("receiving from the coordinator", [&]() -> absl::Status {
    impl_->DrainEvents();
    std::vector<zmq::message_t> parts;
    RETURN_IF_ERROR(PollParts(impl_->socket, timeout, &parts));
    if (parts.empty()) return absl::OkStatus();
    Packet packet;
    for (auto& part : parts) packet.frames.push_back(part.to_string());
    out = std::move(packet);
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace fedge
