// Micro-benchmark of the memory-saving ops against the standard LibTorch
// computation they replace, forward + backward, at CNV's largest layer
// (batch 100, 64 channels, 30x30): shows where training time goes.
//
//   bazel run -c opt //models:binary_ops_bench

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include "models/bnn/binary_ops.h"
#include "models/bnn/bit_tensor.h"

namespace fedge {
namespace {

const at::Tensor& Input() {
  static const at::Tensor x = at::randn({100, 64, 30, 30});
  return x;
}

at::Tensor SteSign(const at::Tensor& x) {
  const at::Tensor clipped = at::hardtanh(x);
  return clipped + (SignOf(x) - clipped).detach();
}

void BM_ConvStandard(benchmark::State& state) {
  at::Tensor w = (at::randn({64, 64, 3, 3}) * 0.1).requires_grad_(true);
  for (auto _ : state) {
    at::Tensor x = Input().clone().requires_grad_(true);
    at::Tensor y = at::conv2d(SteSign(x), w + (SignOf(w) - w).detach());
    y.backward(at::ones_like(y));
  }
}
BENCHMARK(BM_ConvStandard)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ConvPacked(benchmark::State& state) {
  at::Tensor w = (at::randn({64, 64, 3, 3}) * 0.1).to(at::kHalf).requires_grad_(true);
  SignGrad sign_grad;
  LayerHooks hooks{"conv", nullptr, &sign_grad, GradXPrecision::kBFloat16};
  ConvConfig config;
  for (auto _ : state) {
    at::Tensor x = Input().clone().requires_grad_(true);
    at::Tensor y = PackedConv(x, w, config, hooks);
    y.backward(at::ones_like(y));
  }
}
BENCHMARK(BM_ConvPacked)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_NormStandard(benchmark::State& state) {
  at::Tensor gamma = at::ones({64}).requires_grad_(true);
  at::Tensor beta = at::zeros({64}).requires_grad_(true);
  at::Tensor rm = at::zeros({64}), rv = at::ones({64});
  for (auto _ : state) {
    at::Tensor x = Input().clone().requires_grad_(true);
    at::Tensor y = at::batch_norm(x, gamma, beta, rm, rv, true, 0.1, 1e-5, false);
    y.backward(at::ones_like(y));
  }
}
BENCHMARK(BM_NormStandard)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_NormL1(benchmark::State& state) {
  at::Tensor beta = at::zeros({64}).requires_grad_(true);
  at::Tensor rm = at::zeros({64}), rs = at::ones({64});
  LayerHooks hooks{"bn", nullptr, nullptr, GradXPrecision::kBFloat16};
  for (auto _ : state) {
    at::Tensor x = Input().clone().requires_grad_(true);
    at::Tensor y = L1BatchNorm(x, beta, rm, rs, true, 0.1, hooks);
    y.backward(at::ones_like(y));
  }
}
BENCHMARK(BM_NormL1)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_PoolStandard(benchmark::State& state) {
  for (auto _ : state) {
    at::Tensor x = Input().clone().requires_grad_(true);
    at::Tensor y = at::max_pool2d(x, {2, 2}, {2, 2});
    y.backward(at::ones_like(y));
  }
}
BENCHMARK(BM_PoolStandard)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_PoolPacked(benchmark::State& state) {
  LayerHooks hooks{"pool"};
  for (auto _ : state) {
    at::Tensor x = Input().clone().requires_grad_(true);
    at::Tensor y = PackedMaxPool2x2(x, hooks);
    y.backward(at::ones_like(y));
  }
}
BENCHMARK(BM_PoolPacked)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_PackUnpackSigns(benchmark::State& state) {
  for (auto _ : state) {
    at::Tensor packed = PackSignsOf(Input());
    benchmark::DoNotOptimize(UnpackSigns(packed, Input().sizes()));
  }
}
BENCHMARK(BM_PackUnpackSigns)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Clone(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(Input().clone());
}
BENCHMARK(BM_Clone)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  at::set_num_threads(2);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
