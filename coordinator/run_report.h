#ifndef FEDGE_COORDINATOR_RUN_REPORT_H_
#define FEDGE_COORDINATOR_RUN_REPORT_H_

// What the coordinator reports of a run, round by round: one JSON line per
// round (metrics.jsonl), one progress line with the ETA, and at the end a
// table on stdout and an SVG plot of accuracy and model size per round.
//
//   RunReport report(state_dir, total_rounds, env);
//   on_round: report.Add(row, now);      // appends the JSON line, logs progress
//   at the end: report.Finish();         // table + rounds.svg
//
// Not thread-safe: the coordinator's event loop calls it.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/wire/messages.h"

namespace fedge {

struct RoundRow {
  uint64_t round = 0;
  Phase phase = Phase::kPretrain;
  double accuracy = 0;
  double weight_bits = 0, act_bits = 0, model_kb = 0;
  int64_t uplink_bytes = 0, fp32_bytes = 0;
  // The model as the round's tasks carried it, all tasks together, and what
  // the same tasks would have carried as fp32.
  int64_t downlink_bytes = 0, fp32_downlink_bytes = 0;
  uint64_t peak_memory = 0;  // largest training peak an agent measured
  uint64_t process_rss = 0;  // largest agent process peak RSS
  int reported = 0, rejected = 0;
  double seconds = 0;
};

// The row's metrics.jsonl line (no newline).
std::string RoundJson(const RoundRow& row);

class RunReport {
 public:
  RunReport(std::string state_dir, int total_rounds, absl::Time start);

  // Appends the row's JSON line and logs the round with its ETA.
  void Add(const RoundRow& row, absl::Time now);
  // The table on stdout and rounds.svg; nothing when no round finished.
  absl::Status Finish() const;
  // Starts metrics.jsonl afresh (a new run, not a resumed one).
  void Reset() const;

  const std::vector<RoundRow>& rows() const { return rows_; }

 private:
  std::string state_dir_;
  std::string jsonl_path_;
  int total_rounds_;
  absl::Time start_;
  std::vector<RoundRow> rows_;
};

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_RUN_REPORT_H_
