#include "coordinator/sender.h"

#include <set>
#include <string>

#include "common/status/reject_reason.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

Packet From(const std::string& route, const std::string& key_id) {
  Packet p;
  p.peer = route;
  p.authenticated_id = key_id;
  return p;
}

Message For(const std::string& device) {
  Message m;
  m.device_id = device;
  m.body = Heartbeat{};
  return m;
}

TEST(SenderTest, AKeySpeaksForItsOwnIdOnItsOwnConnection) {
  EXPECT_TRUE(CheckSender(From("board-1/ab12", "board-1"), For("board-1")).ok());
  EXPECT_TRUE(CheckSender(From("board-1", ""), For("board-1")).ok());  // plaintext
  const absl::Status other = CheckSender(From("board-1/ab12", "board-1"), For("board-2"));
  EXPECT_EQ(ReasonOf(other), RejectReason::kIdentityMismatch);
  EXPECT_FALSE(CheckSender(From("board-2/ab12", "board-1"), For("board-1")).ok());
  EXPECT_FALSE(CheckSender(From("board-2", ""), For("board-1")).ok());
}

TEST(SenderTest, ARelayPoolKeySpeaksForItsMembersOnly) {
  const std::set<std::string> relays = {"relays"};
  EXPECT_TRUE(CheckSender(From("relays.pod-7/x", "relays"), For("relays.pod-7"), &relays).ok());
  EXPECT_TRUE(CheckSender(From("relays/x", "relays"), For("relays"), &relays).ok());
  // Not a member's name: another id that merely starts alike, an empty name.
  EXPECT_FALSE(CheckSender(From("relays2/x", "relays"), For("relays2"), &relays).ok());
  EXPECT_FALSE(CheckSender(From("relays./x", "relays"), For("relays."), &relays).ok());
  // The pool rule is for relay keys: an agent key speaks for its id alone,
  // and without the enrolment a relay key does too.
  const std::set<std::string> none;
  EXPECT_FALSE(CheckSender(From("board-1.b/x", "board-1"), For("board-1.b"), &relays).ok());
  EXPECT_FALSE(CheckSender(From("relays.pod-7/x", "relays"), For("relays.pod-7"), &none).ok());
  // The route must agree too.
  EXPECT_FALSE(CheckSender(From("relays.pod-8/x", "relays"), For("relays.pod-7"), &relays).ok());
}

}  // namespace
}  // namespace fedge
