#ifndef FEDGE_COMMON_ZMQ_TRANSPORT_H_
#define FEDGE_COMMON_ZMQ_TRANSPORT_H_

// ZeroMQ transports: a ROUTER bound by the coordinator and a DEALER per
// agent (identity = device id). With CURVE, the coordinator has a key pair
// and a ZAP handler admits only agents whose public keys are enrolled in its
// allowlist, under a device id; each received packet then carries that id as
// `authenticated_id`, so a device cannot speak for another. Plaintext runs
// only when asked for, and the coordinator logs a warning when it does.
//
//   ZmqServerOptions options;
//   options.endpoint = "tcp://*:7070";
//   options.curve = CurveServerConfig{keys, allowlist};
//   ASSIGN_OR_RETURN(auto server, ZmqServerTransport::Create(options));
//
// Each transport owns one socket and must be used by one thread; the ZAP
// handler runs on a thread of its own.

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/transport/transport.h"

namespace fedge {

// Z85-encoded (40 characters) CURVE keys.
struct CurveKeyPair {
  std::string public_key;
  std::string secret_key;
};

absl::StatusOr<CurveKeyPair> GenerateCurveKeyPair();

// Key files: "<prefix>.pub" holds the public key, "<prefix>.key" the secret
// key (mode 0600), each one line.
absl::Status WriteKeyPair(const CurveKeyPair& keys, const std::string& prefix);
absl::StatusOr<CurveKeyPair> ReadKeyPair(const std::string& prefix);
absl::StatusOr<std::string> ReadPublicKey(const std::string& path);

// Allowlist file: one "device_id public_key [role]" per line, the role
// "agent" (the default) or "relay" (a relay aggregator enrolled on the root);
// a '#' at the start of a word starts a comment (Z85 keys may contain '#'
// themselves). Errors name the line.
struct Allowlist {
  std::map<std::string, std::string> keys;  // public key -> device id
  std::set<std::string> relays;             // ids enrolled as relays
};
absl::StatusOr<Allowlist> ParseAllowlistWithRoles(const std::string& text);
// The keys alone: public key -> device id.
absl::StatusOr<std::map<std::string, std::string>> ParseAllowlist(
    const std::string& text);

struct CurveServerConfig {
  CurveKeyPair keys;
  std::map<std::string, std::string> allowlist;  // public key -> device id
};

struct ZmqServerOptions {
  std::string endpoint = "tcp://*:7070";
  std::optional<CurveServerConfig> curve;  // nullopt: plaintext
  int64_t max_message_bytes = int64_t{256} << 20;
  // Messages queued per peer before Send refuses more for it
  // (kResourceExhausted): a peer that does not read costs at most this.
  int send_queue_messages = 1000;
  // ZeroMQ's own heartbeat: a connection that delivers no whole frame for
  // this long (after a PING) is dropped. A frame must fit in it: a task's
  // largest tensor (~800 kB for fmnist-cnn) takes ~25 s at 256 kbit/s.
  // Zero: TCP keepalive instead (dead peers dropped after about a minute),
  // for fleets of thousands, where libzmq's heartbeat timers cost the I/O
  // thread time in proportion to the connections on every frame.
  absl::Duration link_timeout = absl::Seconds(60);
};

// A ZeroMQ context that many client transports share: a load generator's
// thousands of agents in one process run on `io_threads` I/O threads
// instead of a context (two threads) each. Room for `max_sockets` sockets
// (each client transport takes three: its DEALER and the two ends of its
// socket monitor).
class ZmqContext {
 public:
  static absl::StatusOr<std::shared_ptr<ZmqContext>> Create(int io_threads, int max_sockets);
  ~ZmqContext();
  ZmqContext(const ZmqContext&) = delete;
  ZmqContext& operator=(const ZmqContext&) = delete;

 private:
  friend class ZmqClientTransport;
  struct State;
  ZmqContext();
  std::unique_ptr<State> state_;
};

struct CurveClientConfig {
  CurveKeyPair keys;
  std::string server_public_key;
};

struct ZmqClientOptions {
  std::string endpoint = "tcp://127.0.0.1:7070";
  // The device id. The routing id is "<identity>/<random nonce>", new for
  // each transport, so that no other connection can take this one's route.
  std::string identity;
  std::optional<CurveClientConfig> curve;
  int64_t max_message_bytes = int64_t{256} << 20;
  // How long closing the transport waits to send what is still queued.
  absl::Duration linger = absl::ZeroDuration();
  // As ZmqServerOptions::link_timeout, for the frames the agent receives.
  absl::Duration link_timeout = absl::Seconds(60);
  // Shared with other transports; null: a context of its own.
  std::shared_ptr<ZmqContext> context;
  // Watch handshakes so connections() counts re-established links (two more
  // sockets and their descriptors). Off, connections() stays 1: for a load
  // generator's thousands of agents, where descriptors are what runs out.
  bool monitor_connections = true;
};

class ZmqServerTransport : public Transport {
 public:
  static absl::StatusOr<std::unique_ptr<ZmqServerTransport>> Create(
      const ZmqServerOptions& options);
  ~ZmqServerTransport() override;

  absl::Status Send(Packet packet) override;
  absl::StatusOr<std::optional<Packet>> Receive(absl::Duration timeout) override;
  // The endpoint actually bound (resolves "tcp://127.0.0.1:*").
  std::string bound_endpoint() const;
  // ZAP denials so far (unknown keys, plaintext clients on a CURVE server).
  int64_t denied() const;

 private:
  struct Impl;
  explicit ZmqServerTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class ZmqClientTransport : public Transport {
 public:
  static absl::StatusOr<std::unique_ptr<ZmqClientTransport>> Create(
      const ZmqClientOptions& options);
  ~ZmqClientTransport() override;

  absl::Status Send(Packet packet) override;
  absl::StatusOr<std::optional<Packet>> Receive(absl::Duration timeout) override;
  // Completed handshakes with the coordinator (from a socket monitor).
  int64_t connections() const override;

 private:
  struct Impl;
  explicit ZmqClientTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_ZMQ_TRANSPORT_H_
