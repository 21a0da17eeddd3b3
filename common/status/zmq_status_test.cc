#include "common/status/zmq_status.h"

#include <cerrno>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "zmq.hpp"

namespace fedge {
namespace {

using ::testing::StartsWith;

TEST(ZmqStatusTest, BadEndpointIsInvalidArgument) {
  zmq::context_t context;
  zmq::socket_t socket(context, zmq::socket_type::router);
  const absl::Status status = CallZmq("binding coordinator", [&] {
    socket.bind("nonsense://x");
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), StartsWith("binding coordinator: "));
}

TEST(ZmqStatusTest, PortInUseIsAlreadyExists) {
  zmq::context_t context;
  zmq::socket_t first(context, zmq::socket_type::router);
  zmq::socket_t second(context, zmq::socket_type::router);
  first.set(zmq::sockopt::linger, 0);
  second.set(zmq::sockopt::linger, 0);
  first.bind("tcp://127.0.0.1:*");
  const std::string endpoint = first.get(zmq::sockopt::last_endpoint);
  const absl::Status status = CallZmq("binding again", [&] {
    second.bind(endpoint);
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
}

TEST(ZmqStatusTest, ErrnoTable) {
  EXPECT_EQ(ZmqErrnoToStatus(EAGAIN, "x").code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ZmqErrnoToStatus(ETERM, "x").code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(ZmqErrnoToStatus(EMSGSIZE, "x").code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ZmqErrnoToStatus(EHOSTUNREACH, "x").code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ZmqErrnoToStatus(EFAULT, "x").code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace fedge
