#include "coordinator/run_report.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <utility>

#include "common/io/file_util.h"
#include "common/io/json_writer.h"
#include "common/status/status_macros.h"
#include "common/io/svg_plot.h"

namespace fedge {

std::string RoundJson(const RoundRow& r) {
  return JsonObject()
      .Add("round", r.round)
      .Add("phase", PhaseName(r.phase))
      .Add("test_accuracy", r.accuracy, 4)
      .Add("mean_weight_bits", r.weight_bits, 3)
      .Add("mean_activation_bits", r.act_bits, 3)
      .Add("model_kb", r.model_kb, 2)
      .Add("uplink_bytes", r.uplink_bytes)
      .Add("fp32_uplink_bytes", r.fp32_bytes)
      .Add("downlink_bytes", r.downlink_bytes)
      .Add("fp32_downlink_bytes", r.fp32_downlink_bytes)
      .Add("peak_device_memory_bytes", r.peak_memory)
      .Add("peak_process_rss_bytes", r.process_rss)
      .Add("reported", r.reported)
      .Add("rejected_updates", r.rejected)
      .Add("seconds", r.seconds, 2)
      .str();
}

RunReport::RunReport(std::string state_dir, int total_rounds, absl::Time start)
    : state_dir_(std::move(state_dir)),
      jsonl_path_(state_dir_ + "/metrics.jsonl"),
      total_rounds_(total_rounds),
      start_(start) {}

void RunReport::Reset() const { std::remove(jsonl_path_.c_str()); }

void RunReport::Add(const RoundRow& row, absl::Time now) {
  rows_.push_back(row);
  std::ofstream(jsonl_path_, std::ios::app) << RoundJson(row) << "\n";
  const double elapsed = absl::ToDoubleSeconds(now - start_);
  const int left = total_rounds_ - static_cast<int>(row.round);
  std::fprintf(stderr,
               "[coordinator] round %llu/%d done: test acc %.2f%%, %.2f w bits, %.1f kB, "
               "uplink %lld B (%.1fx less than fp32), downlink %lld B (%.1fx), agent RSS %.0f MB, "
               "%d reported, %d rejected, %.1fs; ETA %.0fs\n",
               static_cast<unsigned long long>(row.round), total_rounds_, 100 * row.accuracy,
               row.weight_bits, row.model_kb, static_cast<long long>(row.uplink_bytes),
               row.uplink_bytes ? static_cast<double>(row.fp32_bytes) / row.uplink_bytes : 0.0,
               static_cast<long long>(row.downlink_bytes),
               row.downlink_bytes ? static_cast<double>(row.fp32_downlink_bytes) / row.downlink_bytes
                                  : 0.0,
               row.process_rss / 1048576.0,
               row.reported, row.rejected, row.seconds,
               elapsed / std::max<size_t>(1, rows_.size()) * left);
}

absl::Status RunReport::Finish() const {
  if (rows_.empty()) return absl::OkStatus();
  auto ratio = [](int64_t reference, int64_t bytes) {
    return bytes > 0 ? static_cast<double>(reference) / bytes : 0.0;
  };
  std::printf("\n%5s  %-15s %9s %7s %7s %10s %12s %8s %12s %8s %9s %9s\n", "round", "phase",
              "test acc", "w bits", "a bits", "model kB", "uplink B", "vs fp32", "downlink B",
              "vs fp32", "train MB", "RSS MB");
  for (const RoundRow& r : rows_) {
    std::printf("%5llu  %-15s %8.2f%% %7.2f %7.2f %10.1f %12lld %7.1fx %12lld %7.1fx %9.1f %9.1f\n",
                static_cast<unsigned long long>(r.round), PhaseName(r.phase), 100 * r.accuracy,
                r.weight_bits, r.act_bits, r.model_kb, static_cast<long long>(r.uplink_bytes),
                ratio(r.fp32_bytes, r.uplink_bytes), static_cast<long long>(r.downlink_bytes),
                ratio(r.fp32_downlink_bytes, r.downlink_bytes), r.peak_memory / 1048576.0,
                r.process_rss / 1048576.0);
  }
  PlotSeries accuracy{"test accuracy (%)"}, size{"model W+A (kB / 10)"};
  for (const RoundRow& r : rows_) {
    accuracy.x.push_back(static_cast<double>(r.round));
    accuracy.y.push_back(100 * r.accuracy);
    size.x.push_back(static_cast<double>(r.round));
    size.y.push_back(r.model_kb / 10);
  }
  PlotOptions plot;
  plot.title = "Federated training: accuracy and model size per round";
  plot.x_label = "round";
  plot.y_label = "accuracy (%) / model size (kB / 10)";
  RETURN_IF_ERROR(WriteFileAtomically(state_dir_ + "/rounds.svg", RenderSvgPlot({accuracy, size}, plot)));
  std::printf("\nmetrics: %s\nplot:    %s/rounds.svg\n", jsonl_path_.c_str(), state_dir_.c_str());
  std::fflush(stdout);
  return absl::OkStatus();
}

}  // namespace fedge
