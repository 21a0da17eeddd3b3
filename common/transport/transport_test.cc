// The in-memory and fault-injecting transports, and the ZeroMQ transports
// over loopback: plaintext, CURVE with an allowlist, refusal of unknown keys
// and plaintext clients, reconnection after the server restarts.

#include <memory>
#include <string>

#include "common/transport/testing/faulty_transport.h"
#include "common/transport/testing/in_memory_transport.h"
#include "common/transport/zmq_transport.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

Packet Frames(std::vector<std::string> frames, std::string peer = "") {
  Packet p;
  p.peer = std::move(peer);
  p.frames = std::move(frames);
  return p;
}

std::optional<Packet> Next(Transport& t, absl::Duration timeout = absl::Seconds(5)) {
  absl::StatusOr<std::optional<Packet>> p = t.Receive(timeout);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : std::nullopt;
}

TEST(InMemoryTransportTest, RoutesBothWays) {
  InMemoryNetwork net;
  auto server = net.Bind();
  auto a = net.Connect("a");
  auto b = net.Connect("b");
  ASSERT_TRUE(a->Send(Frames({"hello"})).ok());
  ASSERT_TRUE(b->Send(Frames({"x", "y"})).ok());
  std::optional<Packet> first = Next(*server);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->peer, "a");
  EXPECT_EQ(first->authenticated_id, "a");
  std::optional<Packet> second = Next(*server);
  EXPECT_EQ(second->frames.size(), 2u);
  ASSERT_TRUE(server->Send(Frames({"reply"}, "b")).ok());
  EXPECT_EQ(Next(*b)->frames[0], "reply");
  EXPECT_FALSE(Next(*a, absl::Milliseconds(10)).has_value());
  EXPECT_EQ(server->Send(Frames({"?"}, "nobody")).code(), absl::StatusCode::kUnavailable);
  // A disconnected agent loses what is sent either way.
  net.SetConnected("a", false);
  ASSERT_TRUE(a->Send(Frames({"lost"})).ok());
  ASSERT_TRUE(server->Send(Frames({"lost"}, "a")).ok());
  EXPECT_FALSE(Next(*server, absl::Milliseconds(10)).has_value());
  EXPECT_FALSE(Next(*a, absl::Milliseconds(10)).has_value());
}

TEST(FaultyTransportTest, InjectsEachFault) {
  InMemoryNetwork net;
  auto server = net.Bind();
  FaultOptions options;
  options.drop = 0.2;
  options.duplicate = 0.2;
  options.corrupt = 0.2;
  options.reorder = 0.1;
  options.seed = 3;
  FaultyTransport agent(net.Connect("a"), options);
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(agent.Send(Frames({std::string("message-") + std::to_string(i)})).ok());
  }
  int received = 0, corrupted = 0;
  while (auto p = Next(*server, absl::Milliseconds(20))) {
    ++received;
    if (p->frames[0].rfind("message-", 0) != 0) ++corrupted;
  }
  const FaultCounts& c = agent.counts();
  EXPECT_GT(c.dropped, 60);
  EXPECT_GT(c.duplicated, 40);
  EXPECT_GT(c.corrupted, 40);
  EXPECT_GT(c.reordered, 20);
  EXPECT_EQ(received, c.sent);
  EXPECT_GT(corrupted, 0);
  agent.SetDisconnected(true);
  ASSERT_TRUE(agent.Send(Frames({"gone"})).ok());
  EXPECT_FALSE(Next(*server, absl::Milliseconds(10)).has_value());
}

TEST(FaultyTransportTest, DelaysUntilDue) {
  InMemoryNetwork net;
  auto server = net.Bind();
  FaultOptions options;
  options.delay = 1.0;
  options.delay_by = absl::Milliseconds(30);
  FaultyTransport agent(net.Connect("a"), options);
  ASSERT_TRUE(agent.Send(Frames({"late"})).ok());
  EXPECT_FALSE(Next(*server, absl::Milliseconds(5)).has_value());
  absl::SleepFor(absl::Milliseconds(40));
  ASSERT_TRUE(agent.Receive(absl::ZeroDuration()).ok());  // flushes what is due
  EXPECT_TRUE(Next(*server, absl::Milliseconds(100)).has_value());
}

TEST(ZmqTransportTest, PlaintextRoundTrip) {
  ZmqServerOptions server_options;
  server_options.endpoint = "tcp://127.0.0.1:*";
  auto server = ZmqServerTransport::Create(server_options);
  ASSERT_TRUE(server.ok()) << server.status();
  ZmqClientOptions client_options;
  client_options.endpoint = (*server)->bound_endpoint();
  client_options.identity = "board-1";
  auto client = ZmqClientTransport::Create(client_options);
  ASSERT_TRUE(client.ok()) << client.status();
  // The first send may find the connection not yet up (ZMQ_IMMEDIATE).
  std::optional<Packet> got;
  for (int i = 0; i < 50 && !got.has_value(); ++i) {
    (void)(*client)->Send(Frames({"envelope", std::string(100000, 'p')}));
    got = Next(**server, absl::Milliseconds(100));
  }
  ASSERT_TRUE(got.has_value());
  // The routing id names the device, plus a nonce nobody else can know.
  EXPECT_EQ(DeviceOfRoute(got->peer), "board-1");
  EXPECT_EQ(got->peer.size(), std::string("board-1/").size() + 16) << got->peer;
  EXPECT_TRUE(got->authenticated_id.empty());
  EXPECT_EQ(got->frames[1].size(), 100000u);
  EXPECT_EQ((*server)->Send(Frames({"x"}, "board-1")).code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE((*server)->Send(Frames({"welcome"}, got->peer)).ok());
  EXPECT_EQ(Next(**client)->frames[0], "welcome");
  EXPECT_EQ((*server)->Send(Frames({"x"}, "ghost")).code(), absl::StatusCode::kUnavailable);
}

struct CurveSetup {
  CurveKeyPair server_keys, good_keys, bad_keys;
  std::unique_ptr<ZmqServerTransport> server;

  CurveSetup() {
    server_keys = *GenerateCurveKeyPair();
    good_keys = *GenerateCurveKeyPair();
    bad_keys = *GenerateCurveKeyPair();
    ZmqServerOptions options;
    options.endpoint = "tcp://127.0.0.1:*";
    options.curve = CurveServerConfig{server_keys, {{good_keys.public_key, "board-7"}}};
    server = std::move(*ZmqServerTransport::Create(options));
  }

  std::unique_ptr<ZmqClientTransport> Client(const std::string& id,
                                             const CurveKeyPair* keys) {
    ZmqClientOptions options;
    options.endpoint = server->bound_endpoint();
    options.identity = id;
    if (keys != nullptr) options.curve = CurveClientConfig{*keys, server_keys.public_key};
    return std::move(*ZmqClientTransport::Create(options));
  }

  // Tries for up to ~2 s to get one packet from `client` to the server.
  std::optional<Packet> Reach(Transport& client) {
    for (int i = 0; i < 20; ++i) {
      (void)client.Send(Frames({"hello"}));
      absl::StatusOr<std::optional<Packet>> p = server->Receive(absl::Milliseconds(100));
      if (p.ok() && p->has_value()) return *p;
    }
    return std::nullopt;
  }
};

TEST(ZmqTransportTest, CurveAdmitsEnrolledKeyUnderItsDeviceId) {
  CurveSetup setup;
  auto client = setup.Client("board-7", &setup.good_keys);
  std::optional<Packet> got = setup.Reach(*client);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->authenticated_id, "board-7");
  ASSERT_TRUE(setup.server->Send(Frames({"ok"}, got->peer)).ok());
  EXPECT_EQ(Next(*client)->frames[0], "ok");
}

TEST(ZmqTransportTest, CurveRefusesUnknownKeyAndPlaintext) {
  CurveSetup setup;
  auto stranger = setup.Client("board-9", &setup.bad_keys);
  EXPECT_FALSE(setup.Reach(*stranger).has_value());
  auto plain = setup.Client("board-8", nullptr);
  EXPECT_FALSE(setup.Reach(*plain).has_value());
  EXPECT_GE(setup.server->denied(), 1);
}

TEST(ZmqTransportTest, SharedFramesArriveAfterTheOthersAndAreReleased) {
  CurveSetup setup;
  auto client = setup.Client("board-7", &setup.good_keys);
  std::optional<Packet> hello = setup.Reach(*client);
  ASSERT_TRUE(hello.has_value());
  auto big = std::make_shared<const std::string>(300000, 'm');
  Packet p = Frames({"envelope", "copied"}, hello->peer);
  p.shared_frames = {{big, 0, big->size()}, {big, 1000, 5}};
  ASSERT_TRUE(setup.server->Send(std::move(p)).ok());
  std::optional<Packet> got = Next(*client);
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->frames.size(), 4u);
  EXPECT_EQ(got->frames[1], "copied");
  EXPECT_EQ(got->frames[2], *big);
  EXPECT_EQ(got->frames[3], big->substr(1000, 5));
  // Once sent, the transport holds no reference.
  for (int i = 0; i < 100 && big.use_count() > 1; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(big.use_count(), 1);
  // To a peer that is gone: refused, and the references dropped.
  Packet lost = Frames({"envelope"}, "ghost/0");
  lost.shared_frames = {{big, 0, big->size()}};
  EXPECT_FALSE(setup.server->Send(std::move(lost)).ok());
  EXPECT_EQ(big.use_count(), 1);
}

TEST(ZmqTransportTest, ClientsShareOneContext) {
  CurveSetup setup;
  ASSERT_FALSE(ZmqContext::Create(0, 10).ok());
  absl::StatusOr<std::shared_ptr<ZmqContext>> context = ZmqContext::Create(1, 16);
  ASSERT_TRUE(context.ok()) << context.status();
  std::vector<std::unique_ptr<ZmqClientTransport>> clients;
  for (int i = 0; i < 3; ++i) {
    ZmqClientOptions options;
    options.endpoint = setup.server->bound_endpoint();
    options.identity = "board-7";
    options.curve = CurveClientConfig{setup.good_keys, setup.server_keys.public_key};
    options.context = *context;
    clients.push_back(std::move(*ZmqClientTransport::Create(options)));
  }
  context->reset();  // the transports keep it alive
  for (auto& client : clients) {
    std::optional<Packet> got = setup.Reach(*client);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->authenticated_id, "board-7");
    ASSERT_TRUE(setup.server->Send(Frames({"ok"}, got->peer)).ok());
    EXPECT_EQ(Next(*client)->frames[0], "ok");
  }
}

TEST(ZmqTransportTest, ClientReconnectsAfterServerRestart) {
  ZmqServerOptions options;
  options.endpoint = "tcp://127.0.0.1:*";
  auto first = std::move(*ZmqServerTransport::Create(options));
  const std::string endpoint = first->bound_endpoint();
  ZmqClientOptions client_options;
  client_options.endpoint = endpoint;
  client_options.identity = "board-3";
  auto client = std::move(*ZmqClientTransport::Create(client_options));
  std::optional<Packet> got;
  for (int i = 0; i < 50 && !got.has_value(); ++i) {
    (void)client->Send(Frames({"before"}));
    got = Next(*first, absl::Milliseconds(100));
  }
  ASSERT_TRUE(got.has_value());
  (void)client->Receive(absl::ZeroDuration());
  EXPECT_EQ(client->connections(), 1);
  first.reset();  // the coordinator goes away
  options.endpoint = endpoint;
  auto second = std::move(*ZmqServerTransport::Create(options));
  got.reset();
  for (int i = 0; i < 100 && !got.has_value(); ++i) {
    (void)client->Send(Frames({"after"}));
    got = Next(*second, absl::Milliseconds(100));
  }
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->frames[0], "after");
  // The agent can tell its link was re-established (what was in flight on
  // the old one is lost).
  (void)client->Receive(absl::ZeroDuration());
  EXPECT_EQ(client->connections(), 2);
}

TEST(ZmqTransportTest, OversizedMessageIsDroppedAndServerCarriesOn) {
  ZmqServerOptions options;
  options.endpoint = "tcp://127.0.0.1:*";
  options.max_message_bytes = 4096;
  auto server = std::move(*ZmqServerTransport::Create(options));
  ZmqClientOptions big_options;
  big_options.endpoint = server->bound_endpoint();
  big_options.identity = "board-big";
  auto big = std::move(*ZmqClientTransport::Create(big_options));
  for (int i = 0; i < 10; ++i) {
    (void)big->Send(Frames({std::string(100000, 'x')}));
    EXPECT_FALSE(Next(*server, absl::Milliseconds(50)).has_value());
  }
  ZmqClientOptions small_options = big_options;
  small_options.identity = "board-small";
  auto small = std::move(*ZmqClientTransport::Create(small_options));
  std::optional<Packet> got;
  for (int i = 0; i < 50 && !got.has_value(); ++i) {
    (void)small->Send(Frames({"fine"}));
    got = Next(*server, absl::Milliseconds(100));
  }
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(DeviceOfRoute(got->peer), "board-small");
}

TEST(ZmqTransportTest, KeyFilesAndAllowlist) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string prefix = std::string(dir != nullptr ? dir : "/tmp") + "/agent";
  const CurveKeyPair keys = *GenerateCurveKeyPair();
  ASSERT_TRUE(WriteKeyPair(keys, prefix).ok());
  absl::StatusOr<CurveKeyPair> back = ReadKeyPair(prefix);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->secret_key, keys.secret_key);

  auto allowlist = ParseAllowlist("# fleet\nboard-1 " + keys.public_key + "  # lab\n\n");
  ASSERT_TRUE(allowlist.ok()) << allowlist.status();
  EXPECT_EQ(allowlist->at(keys.public_key), "board-1");
  // Z85 keys may contain '#' (about 4 keys in 10 do): only a '#' starting a
  // word is a comment.
  std::string hashed;
  for (int i = 0; i < 200 && hashed.find('#') == std::string::npos; ++i) {
    hashed = GenerateCurveKeyPair()->public_key;
  }
  ASSERT_NE(hashed.find('#'), std::string::npos);
  auto with_hash = ParseAllowlist("board-2 " + hashed + " #comment");
  ASSERT_TRUE(with_hash.ok()) << with_hash.status();
  EXPECT_EQ(with_hash->at(hashed), "board-2");
  EXPECT_THAT(std::string(ParseAllowlist("board-1 short").status().message()),
              HasSubstr("line 1"));
  EXPECT_FALSE(ParseAllowlist("a " + keys.public_key + "\nb " + keys.public_key).ok());
}

TEST(CurveKeysTest, AllowlistRolesEnrolRelaysApart) {
  const std::string k1 = GenerateCurveKeyPair()->public_key, k2 = GenerateCurveKeyPair()->public_key,
                    k3 = GenerateCurveKeyPair()->public_key;
  auto roles = ParseAllowlistWithRoles("relay-1 " + k1 + " relay\nboard-1 " + k2 +
                                       "\nboard-2 " + k3 + " agent\n");
  ASSERT_TRUE(roles.ok()) << roles.status();
  EXPECT_EQ(roles->keys.size(), 3u);
  EXPECT_EQ(roles->relays, std::set<std::string>{"relay-1"});
  EXPECT_EQ(roles->keys.at(k1), "relay-1");
  EXPECT_THAT(std::string(ParseAllowlistWithRoles("r " + k1 + " boss").status().message()),
              HasSubstr("role 'boss'"));
  // One id cannot hold a relay key and an agent key.
  EXPECT_THAT(std::string(ParseAllowlistWithRoles("r " + k1 + " relay\nr " + k2).status().message()),
              HasSubstr("both as an agent and as a relay"));
}

}  // namespace
}  // namespace fedge
