#ifndef FEDGE_COMMON_FAULTY_TRANSPORT_H_
#define FEDGE_COMMON_FAULTY_TRANSPORT_H_

// Wraps a Transport and injects the faults real networks have, on sent
// packets: drop, duplicate, corrupt (one random byte of one random frame
// flipped), reorder (held back and sent after the next packet), delay (held
// back until a given time has passed), and disconnect (everything lost until
// reconnected). Seeded, so a failing test replays exactly.
//
//   FaultyTransport faulty(std::move(inner), {.drop = 0.1, .seed = 7});
//
// Not thread-safe, like the transport it wraps.

#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "common/env/env.h"
#include "common/transport/transport.h"

namespace fedge {

struct FaultOptions {
  double drop = 0;
  double duplicate = 0;
  double corrupt = 0;
  double reorder = 0;
  double delay = 0;
  absl::Duration delay_by = absl::Milliseconds(50);
  uint64_t seed = 1;
  // When delayed packets are due; null: the wall clock.
  std::function<absl::Time()> clock;
};

struct FaultCounts {
  int64_t sent = 0, dropped = 0, duplicated = 0, corrupted = 0, reordered = 0,
          delayed = 0;
};

class FaultyTransport : public Transport {
 public:
  FaultyTransport(std::unique_ptr<Transport> inner, const FaultOptions& options);

  absl::Status Send(Packet packet) override;
  absl::StatusOr<std::optional<Packet>> Receive(absl::Duration timeout) override;

  void SetDisconnected(bool disconnected) { disconnected_ = disconnected; }
  const FaultCounts& counts() const { return counts_; }

 private:
  absl::Time Now() const { return options_.clock ? options_.clock() : Env::Default()->Now(); }
  bool Chance(double p);
  absl::Status Forward(Packet packet);
  absl::Status FlushDue();

  std::unique_ptr<Transport> inner_;
  FaultOptions options_;
  std::mt19937_64 rng_;
  bool disconnected_ = false;
  std::vector<Packet> held_;  // reordered: go out after the next send
  std::vector<std::pair<absl::Time, Packet>> delayed_;
  FaultCounts counts_;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_FAULTY_TRANSPORT_H_
