// Generates a CURVE key pair for the coordinator or an agent.
//
//   bazel run //common/transport:keygen -- --out=/var/lib/fedge/keys/coordinator
//
// writes coordinator.key (secret, mode 0600) and coordinator.pub, and prints
// the public key. For an agent, add its line to the coordinator's allowlist:
//   <device id> <public key>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "common/transport/zmq_transport.h"

ABSL_FLAG(std::string, out, "", "path prefix of the key files to write");
ABSL_FLAG(std::string, device_id, "",
          "for an agent or a relay: print its allowlist line under this id");
ABSL_FLAG(bool, relay, false, "the allowlist line enrols the id as a relay (on the root's allowlist)");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "keygen: --out=PATH_PREFIX is required\n");
    return 2;
  }
  const absl::StatusOr<fedge::CurveKeyPair> keys = fedge::GenerateCurveKeyPair();
  if (!keys.ok()) {
    std::fprintf(stderr, "keygen: %s\n", keys.status().ToString().c_str());
    return 1;
  }
  const absl::Status status = fedge::WriteKeyPair(*keys, out);
  if (!status.ok()) {
    std::fprintf(stderr, "keygen: %s\n", status.ToString().c_str());
    return 1;
  }
  std::fprintf(stderr, "wrote %s.key (secret) and %s.pub\n", out.c_str(), out.c_str());
  const std::string device_id = absl::GetFlag(FLAGS_device_id);
  if (device_id.empty()) {
    std::printf("%s\n", keys->public_key.c_str());
  } else {
    std::printf("%s %s%s\n", device_id.c_str(), keys->public_key.c_str(),
                absl::GetFlag(FLAGS_relay) ? " relay" : "");
  }
  return 0;
}
