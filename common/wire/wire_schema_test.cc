// Checks that the generated schema code builds, links and round-trips
// through Cap'n Proto's flat-array serialization.

#include <string>

#include "capnp/message.h"
#include "capnp/serialize.h"
#include "common/wire/wire.capnp.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(WireSchemaTest, RegisterRoundTripsThroughFlatArray) {
  capnp::MallocMessageBuilder builder;
  auto envelope = builder.initRoot<wire::Envelope>();
  envelope.setVersion(wire::PROTOCOL_VERSION);
  envelope.setDeviceId("board-17");
  auto reg = envelope.getBody().initRegister();
  reg.setMemoryBudgetBytes(512ull << 20);
  reg.setCores(4);
  reg.setSamples(6000);

  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  capnp::FlatArrayMessageReader reader(words.asPtr());
  auto read = reader.getRoot<wire::Envelope>();
  EXPECT_EQ(read.getVersion(), 1);
  EXPECT_EQ(std::string(read.getDeviceId().cStr()), "board-17");
  ASSERT_EQ(read.getBody().which(), wire::Envelope::Body::REGISTER);
  EXPECT_EQ(read.getBody().getRegister().getMemoryBudgetBytes(), 512ull << 20);
  EXPECT_EQ(read.getBody().getRegister().getCores(), 4);
  EXPECT_EQ(read.getBody().getRegister().getSamples(), 6000u);
}

}  // namespace
}  // namespace fedge
