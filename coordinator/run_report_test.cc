#include "coordinator/run_report.h"

#include <string>

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(RunReportTest, OneJsonLinePerRound) {
  RoundRow row;
  row.round = 3;
  row.phase = Phase::kFinetune;
  row.accuracy = 0.89204;
  row.weight_bits = 3.1;
  row.act_bits = 8;
  row.model_kb = 173.6;
  row.uplink_bytes = 223408;
  row.fp32_bytes = 6678840;
  row.peak_memory = 48 << 20;
  row.reported = 6;
  row.seconds = 10.71;
  EXPECT_EQ(RoundJson(row),
            "{\"round\": 3, \"phase\": \"finetune\", \"test_accuracy\": 0.8920, "
            "\"mean_weight_bits\": 3.100, \"mean_activation_bits\": 8.000, \"model_kb\": 173.60, "
            "\"uplink_bytes\": 223408, \"fp32_uplink_bytes\": 6678840, "
            "\"downlink_bytes\": 0, \"fp32_downlink_bytes\": 0, "
            "\"peak_device_memory_bytes\": 50331648, \"peak_process_rss_bytes\": 0, \"reported\": 6, \"rejected_updates\": 0, "
            "\"seconds\": 10.71}");
}

}  // namespace
}  // namespace fedge
