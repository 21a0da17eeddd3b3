#include "models/memory/memory_ledger.h"

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(MemoryLedgerTest, TracksHeldAndPeakPerLayer) {
  MemoryLedger ledger;
  ledger.Hold("conv1", 100);
  ledger.Hold("conv2", 50);
  ledger.Hold("conv1", 10);
  EXPECT_EQ(ledger.saved_bytes(), 160);
  ledger.Release("conv2", 50);
  ledger.Release("conv1", 110);
  EXPECT_EQ(ledger.saved_bytes(), 0);
  EXPECT_EQ(ledger.peak_saved_bytes(), 160);
  const auto layers = ledger.layers();
  EXPECT_EQ(layers.at("conv1").peak, 110);
  EXPECT_EQ(layers.at("conv1").held, 0);
  EXPECT_EQ(layers.at("conv2").peak, 50);
}

TEST(MemoryLedgerTest, StateIsSetNotAdded) {
  MemoryLedger ledger;
  ledger.SetState(StateKind::kWeights, 1000);
  ledger.SetState(StateKind::kWeights, 800);
  ledger.SetState(StateKind::kOptimizer, 300);
  ledger.SetState(StateKind::kWeightGrads, 20);
  ledger.Hold("fc1", 5);
  EXPECT_EQ(ledger.state_total(), 1120);
  EXPECT_EQ(ledger.peak_total(), 1125);
}

TEST(MemoryLedgerTest, ResetPeaksKeepsHoldings) {
  MemoryLedger ledger;
  ledger.Hold("a", 40);
  ledger.Release("a", 30);
  ledger.ResetPeaks();
  EXPECT_EQ(ledger.peak_saved_bytes(), 10);
  EXPECT_EQ(ledger.layers().at("a").peak, 10);
  ledger.Release("unknown", 5);  // ignored
  EXPECT_EQ(ledger.saved_bytes(), 10);
}

}  // namespace
}  // namespace fedge
