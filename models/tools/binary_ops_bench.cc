// Micro-benchmarks of the memory-saving training kernels against the
// LibTorch float computation they replace.
//
// First a table: every binary-input layer of CNV and BinaryNet (batch 100,
// 1x32x32 input), forward, dX and dW of the bit-packed kernels
// (models/kernels/binary_conv.h) against LibTorch's float convolution on the
// same +-1 values, at 1 and 2 threads, median of --repeats runs each, with
// the speed-up (float time / kernel time). Then the whole ops (forward +
// backward through autograd) at CNV's largest layer with Google Benchmark.
//
//   bazel run -c opt //models/tools:binary_ops_bench -- --repeats=7

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "models/bnn/arch.h"
#include "models/bnn/binary_ops.h"
#include "models/bnn/bit_tensor.h"
#include "models/bnn/torch_parallel.h"
#include "models/kernels/binary_conv.h"

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

namespace fedge {
namespace {

template <typename Fn>
double MedianMs(int repeats, Fn fn) {
  fn();  // warm-up: first-touch pages, oneDNN primitive creation
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double, std::milli>(
                        std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// One layer's three passes, float (LibTorch) against bits (ours).
void BenchLayer(const std::string& arch, const LayerSpec& layer, int batch,
                int threads, int repeats) {
  at::set_num_threads(threads);
  const bool linear = layer.kind == LayerKind::kLinear;
  BinaryConvShape s;
  s.n = batch;
  s.c = layer.in_channels;
  s.out = layer.out_channels;
  if (!linear) {
    s.h = layer.in_height;
    s.w = layer.in_width;
    s.kernel = layer.kernel;
    s.pad = layer.padding;
  }
  const std::vector<int64_t> x_shape =
      linear ? std::vector<int64_t>{s.n, s.c} : std::vector<int64_t>{s.n, s.c, s.h, s.w};
  const std::vector<int64_t> w_shape =
      linear ? std::vector<int64_t>{s.out, s.c}
             : std::vector<int64_t>{s.out, s.c, s.kernel, s.kernel};
  const at::Tensor x = at::randn(x_shape);
  const at::Tensor xs = SignOf(x);
  const at::Tensor w = at::randn(w_shape);
  const at::Tensor ws = SignOf(w);
  const at::Tensor y = linear ? at::linear(xs, ws) : at::conv2d(xs, ws, {}, 1, s.pad);
  const at::Tensor dy = at::randn(y.sizes());

  auto float_backward = [&](bool dx, bool dw) {
    if (linear) {
      if (dx) benchmark::DoNotOptimize(dy.mm(ws));
      if (dw) benchmark::DoNotOptimize(dy.t().mm(xs));
      return;
    }
    benchmark::DoNotOptimize(at::convolution_backward(
        dy, xs, ws, c10::nullopt, {1, 1}, {s.pad, s.pad}, {1, 1}, false, {0, 0}, 1,
        {dx, dw, false}));
  };
  const double f_fwd = MedianMs(repeats, [&] {
    benchmark::DoNotOptimize(linear ? at::linear(xs, ws) : at::conv2d(xs, ws, {}, 1, s.pad));
  });
  const double f_dx = MedianMs(repeats, [&] { float_backward(true, false); });
  const double f_dw = MedianMs(repeats, [&] { float_backward(false, true); });

  std::vector<uint64_t> signs(s.input_words()), mask(s.mask_words()), wsig(s.weight_words());
  std::vector<float> out(y.numel()), dx(x.numel()), dw(w.numel());
  std::vector<int8_t> q(dy.numel());
  const at::Tensor xc = x.contiguous(), wc = w.contiguous(), dyc = dy.contiguous();
  // Forward: pack the input's signs and mask, pack sign(W), popcount.
  const double b_fwd = MedianMs(repeats, [&] {
    PackActivationSigns(xc.data_ptr<float>(), s, 1.0f, signs.data(), mask.data(),
                        TorchParallel());
    PackWeightSigns(wc.data_ptr<float>(), s, wsig.data(), TorchParallel());
    BinaryConvForward(signs.data(), wsig.data(), s, out.data(), TorchParallel());
  });
  const float scale = QuantizeInt8(dyc.data_ptr<float>(), dy.numel(), q.data(), TorchParallel());
  // dX includes quantizing dY (done once per layer, shared with dW).
  const double b_dx = MedianMs(repeats, [&] {
    QuantizeInt8(dyc.data_ptr<float>(), dy.numel(), q.data(), TorchParallel());
    BinaryConvBackwardInput(q.data(), scale, wsig.data(), mask.data(), s, dx.data(),
                            TorchParallel());
  });
  const double b_dw = MedianMs(repeats, [&] {
    BinaryConvBackwardWeight(q.data(), scale, signs.data(), s, dw.data(), TorchParallel());
  });
  std::printf("%-10s %-7s %2d | %8.2f %8.2f %6.2fx | %8.2f %8.2f %6.2fx | %8.2f %8.2f %6.2fx\n",
              arch.c_str(), layer.name.c_str(), threads, f_fwd, b_fwd, f_fwd / b_fwd, f_dx,
              b_dx, f_dx / b_dx, f_dw, b_dw, f_dw / b_dw);
}

void BenchLayers(int repeats) {
  std::printf("kernel path: %s; times in ms, median of %d runs; x = float / bits\n",
              KernelPathName(ActiveKernelPath()), repeats);
  std::printf("%-10s %-7s %2s | %8s %8s %7s | %8s %8s %7s | %8s %8s %7s\n", "arch",
              "layer", "th", "fwd f32", "fwd bit", "", "dX f32", "dX int", "", "dW f32",
              "dW int", "");
  for (const char* name : {"cnv", "binarynet"}) {
    const absl::StatusOr<ArchSpec> arch = MakeArch(name, InputShape{1, 32, 32});
    if (!arch.ok()) continue;
    const int first = arch->first_weight_layer();
    for (int threads : {1, 2}) {
      for (size_t i = 0; i < arch->layers.size(); ++i) {
        const LayerSpec& layer = arch->layers[i];
        if (!layer.has_weights || static_cast<int>(i) == first) continue;
        BenchLayer(name, layer, 100, threads, repeats);
      }
    }
  }
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  int repeats = 7;
  bool layers_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--repeats=", 10) == 0) repeats = std::max(1, std::atoi(argv[i] + 10));
    if (std::strcmp(argv[i], "--layers_only") == 0) layers_only = true;
  }
  fedge::BenchLayers(repeats);
  if (layers_only) return 0;
  at::set_num_threads(2);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
