#include "models/bnn/trainer.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"
#include "models/memory/counting_allocator.h"

namespace fedge {

absl::StatusOr<TrainReport> Train(TrainableNet& net, const Dataset& data,
                                  const TrainOptions& options,
                                  const ProgressFn& progress) {
  if (options.epochs < 1 || options.batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "epochs (", options.epochs, ") and batch size (", options.batch_size,
        ") must be positive"));
  }
  if (data.size() == 0) return absl::InvalidArgumentError("no training data");
  if (options.reset_optimizer_every < 0) {
    return absl::InvalidArgumentError(absl::StrCat("reset_optimizer_every (",
                                                   options.reset_optimizer_every,
                                                   ") must be >= 0"));
  }
  if (options.lr_schedule != LrSchedule::kConstant && !(options.learning_rate > 0)) {
    return absl::InvalidArgumentError("a learning-rate schedule needs a positive learning rate");
  }
  TrainReport report;
  const int64_t n = data.size();
  const int64_t per_epoch = (n + options.batch_size - 1) / options.batch_size;
  const int64_t total_steps =
      options.max_steps >= 0 ? std::min<int64_t>(options.max_steps, per_epoch * options.epochs)
                             : per_epoch * options.epochs;
  const bool counting = CountingCpuAllocator::Installed();
  const auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(CallTorch(absl::StrCat("training ", net.name()), [&] {
    at::Generator gen = at::detail::createCPUGenerator(options.seed);
    for (int epoch = 1; epoch <= options.epochs; ++epoch) {
      const at::Tensor order = at::randperm(n, gen);
      double loss_sum = 0;
      int64_t correct = 0, seen = 0;
      for (int64_t begin = 0; begin < n; begin += options.batch_size) {
        if (options.max_steps >= 0 && report.steps >= options.max_steps) break;
        const int64_t size = std::min<int64_t>(options.batch_size, n - begin);
        const at::Tensor index = order.narrow(0, begin, size);
        if (options.reset_optimizer_every > 0 && report.steps > 0 &&
            report.steps % options.reset_optimizer_every == 0) {
          net.ResetOptimizer();
        }
        const at::Tensor x = data.Batch(index);
        const at::Tensor y = data.labels.index_select(0, index);

        const int64_t live_before = CountingCpuAllocator::LiveBytes();
        if (counting) CountingCpuAllocator::ResetPeak();
        const at::Tensor logits = net.Forward(x, /*training=*/true);
        if (counting) {
          report.held_for_backward_bytes = std::max(
              report.held_for_backward_bytes,
              CountingCpuAllocator::LiveBytes() - live_before -
                  static_cast<int64_t>(logits.nbytes()));
        }
        const at::Tensor loss =
            at::nll_loss(at::log_softmax(logits, 1), y);
        loss.backward();
        if (options.lr_schedule != LrSchedule::kConstant) {
          net.set_learning_rate(options.learning_rate *
                                LrFactor(options.lr_schedule, report.steps, total_steps));
        }
        net.Step();
        if (counting) {
          report.step_peak_bytes =
              std::max(report.step_peak_bytes,
                       CountingCpuAllocator::PeakBytes() - live_before);
        }
        loss_sum += loss.item<double>() * size;
        correct += logits.argmax(1).eq(y).sum().item<int64_t>();
        seen += size;
        ++report.steps;
      }
      if (seen == 0) break;
      report.samples += seen;
      report.loss = loss_sum / seen;
      report.train_accuracy = static_cast<double>(correct) / seen;
      const double elapsed = std::chrono::duration<double>(
                                 std::chrono::steady_clock::now() - start)
                                 .count();
      if (progress) {
        EpochProgress p;
        p.epoch = epoch;
        p.epochs = options.epochs;
        p.loss = report.loss;
        p.accuracy = report.train_accuracy;
        p.samples_per_second = report.samples / elapsed;
        p.eta_seconds = elapsed / epoch * (options.epochs - epoch);
        progress(p);
      }
    }
    return absl::OkStatus();
  }));
  report.seconds = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start)
                       .count();
  report.samples_per_second = report.samples / std::max(report.seconds, 1e-9);
  return report;
}

absl::StatusOr<double> Evaluate(TrainableNet& net, const Dataset& data,
                                int batch_size) {
  if (data.size() == 0) return absl::InvalidArgumentError("no evaluation data");
  int64_t correct = 0;
  RETURN_IF_ERROR(CallTorch(absl::StrCat("evaluating ", net.name()), [&] {
    at::NoGradGuard no_grad;
    for (int64_t begin = 0; begin < data.size(); begin += batch_size) {
      const int64_t size = std::min<int64_t>(batch_size, data.size() - begin);
      const at::Tensor logits =
          net.Forward(data.Range(begin, size), /*training=*/false);
      correct +=
          logits.argmax(1).eq(data.labels.narrow(0, begin, size)).sum().item<int64_t>();
    }
    return absl::OkStatus();
  }));
  return static_cast<double>(correct) / data.size();
}

void PrintProgress(const std::string& label, const EpochProgress& p) {
  std::fprintf(stderr,
               "[%s] epoch %d/%d  loss %.4f  train acc %.2f%%  %.0f samples/s"
               "  ETA %.0fs\n",
               label.c_str(), p.epoch, p.epochs, p.loss, 100 * p.accuracy,
               p.samples_per_second, p.eta_seconds);
}

}  // namespace fedge
