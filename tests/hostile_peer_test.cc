// The coordinator service over real ZeroMQ with CURVE, against peers that
// misbehave at the connection level: an enrolled device that connects under
// another device's routing id to take its route, and a peer that floods
// invalid messages without ever reading its replies. Both must leave every
// other agent served.

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/codec/update_codec.h"
#include "common/wire/wire_codec.h"
#include "common/transport/zmq_transport.h"
#include "coordinator/service.h"
#include "gtest/gtest.h"
#include "zmq.hpp"

namespace fedge {
namespace {

ModelState Model() {
  ModelState m;
  m.shards = {{"a.weight", 0, {2000}, std::vector<float>(2000, 0.5f)}};
  return m;
}

std::vector<std::string> Encode(const std::string& device, uint64_t session, Body body) {
  Message m;
  m.device_id = device;
  m.session_id = session;
  m.body = std::move(body);
  absl::StatusOr<std::vector<std::string>> frames = EncodeMessage(m);
  EXPECT_TRUE(frames.ok()) << frames.status();
  return frames.ok() ? *frames : std::vector<std::string>{};
}

// An agent's transport that remembers what it was sent.
struct Client {
  std::unique_ptr<ZmqClientTransport> transport;
  std::vector<Message> received;

  void Send(std::vector<std::string> frames) {
    Packet p;
    p.frames = std::move(frames);
    (void)transport->Send(std::move(p));
  }
  void Drain() {
    while (true) {
      absl::StatusOr<std::optional<Packet>> p = transport->Receive(absl::ZeroDuration());
      if (!p.ok() || !p->has_value()) return;
      absl::StatusOr<Message> m = DecodeMessage((**p).frames);
      if (m.ok()) received.push_back(std::move(*m));
    }
  }
  template <typename T>
  const T* Last() const {
    for (auto it = received.rbegin(); it != received.rend(); ++it) {
      if (const auto* body = std::get_if<T>(&it->body)) return body;
    }
    return nullptr;
  }
};

class HostilePeerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_keys_ = *GenerateCurveKeyPair();
    for (const char* id : {"board-1", "board-2", "board-3"}) {
      keys_[id] = *GenerateCurveKeyPair();
      allowlist_[keys_[id].public_key] = id;
    }
  }

  void StartServer(const ServiceOptions& options, int send_queue) {
    ZmqServerOptions server;
    server.endpoint = "tcp://127.0.0.1:*";
    server.curve = CurveServerConfig{server_keys_, allowlist_};
    server.send_queue_messages = send_queue;
    absl::StatusOr<std::unique_ptr<ZmqServerTransport>> t = ZmqServerTransport::Create(server);
    ASSERT_TRUE(t.ok()) << t.status();
    server_ = std::move(*t);
    service_ = std::make_unique<CoordinatorService>(options, Model(), 0, server_.get(), nullptr);
  }

  Client Connect(const std::string& id) {
    ZmqClientOptions options;
    options.endpoint = server_->bound_endpoint();
    options.identity = id;
    options.curve = CurveClientConfig{keys_[id], server_keys_.public_key};
    absl::StatusOr<std::unique_ptr<ZmqClientTransport>> t = ZmqClientTransport::Create(options);
    EXPECT_TRUE(t.ok()) << t.status();
    return Client{std::move(*t), {}};
  }

  // Steps the service while `clients` read, until `done` or 60 s.
  template <typename Done>
  void RunUntil(std::vector<Client*> clients, Done done) {
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while (!done() && absl::Now() < give_up) {
      ASSERT_TRUE(service_->Step(absl::Now(), absl::Milliseconds(5)).ok());
      for (Client* c : clients) c->Drain();
    }
  }

  // A raw DEALER with `key_id`'s enrolled key and any routing id: what a
  // hostile peer can make.
  zmq::socket_t RawPeer(zmq::context_t& context, const std::string& routing_id,
                        const std::string& key_id) {
    zmq::socket_t socket(context, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::routing_id, routing_id);
    socket.set(zmq::sockopt::curve_serverkey, server_keys_.public_key);
    socket.set(zmq::sockopt::curve_publickey, keys_[key_id].public_key);
    socket.set(zmq::sockopt::curve_secretkey, keys_[key_id].secret_key);
    socket.set(zmq::sockopt::linger, 0);
    return socket;
  }

  CurveKeyPair server_keys_;
  std::map<std::string, CurveKeyPair> keys_;
  std::map<std::string, std::string> allowlist_;
  std::unique_ptr<ZmqServerTransport> server_;
  std::unique_ptr<CoordinatorService> service_;
};

TEST_F(HostilePeerTest, AnotherDevicesKeyCannotTakeItsRouteOrSpeakForIt) {
  ServiceOptions options;
  options.run.min_agents = 2;
  options.downlink = Codec::kFp32;
  options.log = false;
  StartServer(options, 1000);
  Client board1 = Connect("board-1");
  Client board3 = Connect("board-3");
  // Register both (the first sends may find the connection still coming up).
  RunUntil({&board1, &board3}, [&] {
    if (board1.Last<Welcome>() == nullptr) board1.Send(Encode("board-1", 0, Register{1 << 26, 1, 10, "t"}));
    if (board3.Last<Welcome>() == nullptr) board3.Send(Encode("board-3", 0, Register{1 << 26, 1, 10, "t"}));
    return board1.Last<Task>() != nullptr && board3.Last<Task>() != nullptr;
  });
  ASSERT_NE(board1.Last<Task>(), nullptr);
  const uint64_t session = board1.Last<Welcome>()->session_id;
  const uint64_t task_id = board1.Last<Task>()->task_id;

  // board-2's key, under board-1's plain device id as routing id (what the
  // old transport used), speaking for board-1 with its session.
  zmq::context_t context;
  zmq::socket_t impostor = RawPeer(context, "board-1", "board-2");
  impostor.connect(server_->bound_endpoint());
  auto impostor_send = [&](std::vector<std::string> frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      impostor.send(zmq::buffer(frames[i]),
                    i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  };
  TaskResult forged;
  forged.round_id = 1;
  forged.task_id = task_id;
  forged.samples = 10;
  WireTensor u;
  u.name = "a.weight";
  u.shape = {2000};
  ASSERT_TRUE(EncodeUpdate(std::vector<float>(2000, 1.0f), {Codec::kFp32, 0, 1}, 0, nullptr, &u).ok());
  forged.updates.push_back(u);
  impostor_send(Encode("board-1", session, Heartbeat{0}));
  impostor_send(Encode("board-1", session, forged));
  const auto mismatches = [&] {
    auto it = service_->counters().rejections.find("identity_mismatch");
    return it == service_->counters().rejections.end() ? 0 : it->second;
  };
  RunUntil({&board1, &board3}, [&] { return mismatches() >= 2; });
  EXPECT_EQ(mismatches(), 2);
  EXPECT_EQ(service_->counters().accepted_results, 0);
  EXPECT_TRUE(service_->engine().in_round());
  // What the impostor got back is a Reject, never board-1's traffic.
  std::vector<Message> to_impostor;
  for (int i = 0; i < 20; ++i) {
    std::vector<zmq::message_t> parts;
    zmq::message_t part;
    if (!impostor.recv(part, zmq::recv_flags::dontwait)) break;
    parts.push_back(std::move(part));
    while (parts.back().more()) {
      zmq::message_t next;
      (void)impostor.recv(next);
      parts.push_back(std::move(next));
    }
    std::vector<std::string> frames;
    for (auto& p : parts) frames.push_back(p.to_string());
    absl::StatusOr<Message> m = DecodeMessage(frames);
    ASSERT_TRUE(m.ok());
    to_impostor.push_back(*m);
  }
  for (const Message& m : to_impostor) EXPECT_TRUE(std::holds_alternative<Reject>(m.body));

  // board-1's route is still board-1's: the task sent again after it
  // registers anew reaches it, and its own result closes its task.
  board1.received.clear();
  board1.Send(Encode("board-1", 0, Register{1 << 26, 1, 10, "t", 0, /*new_connection=*/true}));
  RunUntil({&board1, &board3}, [&] { return board1.Last<Task>() != nullptr; });
  ASSERT_NE(board1.Last<Task>(), nullptr);
  EXPECT_EQ(board1.Last<Task>()->task_id, task_id);
  board1.Send(Encode("board-1", board1.Last<Welcome>()->session_id, forged));
  RunUntil({&board1, &board3}, [&] { return board1.Last<ResultAck>() != nullptr; });
  ASSERT_NE(board1.Last<ResultAck>(), nullptr);
  EXPECT_TRUE(board1.Last<ResultAck>()->accepted);
}

TEST_F(HostilePeerTest, APeerThatNeverReadsCannotFreezeTheLoop) {
  ServiceOptions options;
  options.run.min_agents = 1;
  options.log = false;
  // Every refusal answered, so the flooder's queue really fills.
  options.refusals = {1e9, 1e9, 1000};
  StartServer(options, /*send_queue=*/50);
  const std::string endpoint = server_->bound_endpoint();
  std::atomic<int> flooded{0};
  std::atomic<bool> stop{false};
  zmq::context_t flood_context;
  zmq::socket_t socket = RawPeer(flood_context, "board-2/flood", "board-2");
  std::thread flooder([&] {
    socket.set(zmq::sockopt::rcvhwm, 10);
    socket.connect(endpoint);
    const std::string junk(16, 'j');
    for (int i = 0; i < 30000; ++i) {
      socket.send(zmq::buffer(junk), zmq::send_flags::none);
      ++flooded;
    }
    // Connected, never reading, until the test is done with it.
    while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  Client board1 = Connect("board-1");
  RunUntil({&board1}, [&] { return service_->counters().messages >= 30000; });
  const ServiceCounters& c = service_->counters();
  EXPECT_EQ(c.malformed, 30000);
  ASSERT_GT(c.dropped_replies.count("peer_queue_full"), 0u);
  EXPECT_GT(c.dropped_replies.at("peer_queue_full"), 0);
  // The loop never stopped: an agent registers and is welcomed.
  RunUntil({&board1}, [&] {
    if (board1.Last<Welcome>() == nullptr) board1.Send(Encode("board-1", 0, Register{1 << 26, 1, 10, "t"}));
    return board1.Last<Welcome>() != nullptr;
  });
  EXPECT_NE(board1.Last<Welcome>(), nullptr);
  stop = true;
  flooder.join();
}

}  // namespace
}  // namespace fedge
