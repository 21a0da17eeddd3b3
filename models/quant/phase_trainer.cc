#include "models/quant/phase_trainer.h"

#include <ATen/ATen.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace fedge {
namespace {

// e(kb, budget) of the size model, differentiable in kb.
at::Tensor Excess(const at::Tensor& kb, double budget_kb, PenaltyForm form) {
  return at::relu(form == PenaltyForm::kRelative ? kb / budget_kb - 1.0 : kb - budget_kb);
}

at::Tensor PenaltyTensor(const QuantNet& net, const Budget& budget, double ramp) {
  at::Tensor penalty = at::zeros({}, at::kFloat);
  if (budget.weight_kb > 0) {
    penalty = penalty +
              budget.lambda_w * Excess(net.WeightKb(), budget.weight_kb, budget.form).pow(2);
  }
  if (budget.activation_kb > 0) {
    penalty = penalty + budget.lambda_a *
                            Excess(net.ActivationKb(), budget.activation_kb, budget.form).pow(2);
  }
  return penalty * ramp;
}

// Adam on log d and log xmax: an update moves a quantizer's step and range by
// a factor, so one learning rate suits a weight step of 2e-3 and an
// activation range of 10 alike. (Adam on d itself moves every step by about
// the learning rate whatever its size: at 1e-2 one update multiplies an
// 8-bit weight step of 2e-3 by six, and the bit-widths collapse.)
class LogScaleAdam {
 public:
  LogScaleAdam(std::vector<at::Tensor> params, double learning_rate)
      : params_(std::move(params)), lr_(learning_rate) {
    for (const at::Tensor& p : params_) {
      m_.push_back(at::zeros_like(p));
      v_.push_back(at::zeros_like(p));
    }
  }

  void ZeroGrad() {
    for (at::Tensor& p : params_) {
      if (p.grad().defined()) p.mutable_grad().zero_();
    }
  }

  void Step() {
    at::NoGradGuard no_grad;
    ++t_;
    const double c1 = 1 - std::pow(kBeta1, t_), c2 = 1 - std::pow(kBeta2, t_);
    for (size_t i = 0; i < params_.size(); ++i) {
      at::Tensor& p = params_[i];
      if (!p.grad().defined()) continue;
      const at::Tensor g = p.grad() * p;  // dL/d(log p)
      m_[i].mul_(kBeta1).add_(g, 1 - kBeta1);
      v_[i].mul_(kBeta2).addcmul_(g, g, 1 - kBeta2);
      const at::Tensor step = (m_[i] / c1) / ((v_[i] / c2).sqrt() + kEpsilon);
      p.mul_(at::exp(step * -lr_));
    }
  }

 private:
  static constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEpsilon = 1e-8;
  std::vector<at::Tensor> params_, m_, v_;
  double lr_;
  int64_t t_ = 0;
};

}  // namespace

absl::StatusOr<PhaseReport> RunPhase(QuantNet& net, const Dataset& data,
                                     const PhaseConfig& config,
                                     const PhaseProgressFn& progress) {
  if (config.steps < 1 || config.batch_size < 1 || config.quantizer_every < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "steps (", config.steps, "), batch size (", config.batch_size,
        ") and quantizer interval (", config.quantizer_every, ") must be positive"));
  }
  if (data.size() == 0) return absl::InvalidArgumentError("no training data");
  PhaseReport report;
  const auto start = std::chrono::steady_clock::now();
  const bool learn = config.phase == Phase::kLearnPrecision;
  RETURN_IF_ERROR(CallTorch(absl::StrCat("running phase ", PhaseName(config.phase)), [&] {
    BatchSampler batches(data, config.batch_size, config.seed);
    auto next_batch = [&](at::Tensor* x, at::Tensor* y) { batches.Next(x, y); };

    if (config.phase == Phase::kPretrain && config.calibrate) {
      at::Tensor x, y;
      next_batch(&x, &y);
      net.Calibrate(x, config.pretrain_bits);
    }
    if (config.phase == Phase::kFinetune || (learn && config.project_first)) {
      const QuantNet::Projection projection = net.ProjectToBudget(config.budget);
      report.projected_weight_bits = projection.weight_cuts;
      report.projected_activation_bits = projection.activation_cuts;
      report.refilled_weight_bits = projection.weight_refills;
      report.refilled_activation_bits = projection.activation_refills;
    }
    net.SetQuantizersTrainable(learn);
    torch::optim::Adam weights(net.WeightParameters(),
                               torch::optim::AdamOptions(config.learning_rate));
    std::unique_ptr<torch::optim::Adam> quantizers;
    std::unique_ptr<LogScaleAdam> log_quantizers;
    if (learn && config.quantizer_log_scale) {
      log_quantizers =
          std::make_unique<LogScaleAdam>(net.QuantizerParameters(), config.quantizer_learning_rate);
    } else if (learn) {
      quantizers = std::make_unique<torch::optim::Adam>(
          net.QuantizerParameters(), torch::optim::AdamOptions(config.quantizer_learning_rate));
    }
    const int64_t phase_steps = config.phase_steps > 0 ? config.phase_steps : config.steps;
    const int64_t tail = std::max<int64_t>(1, config.steps / 4);
    double loss_sum = 0, correct = 0, seen = 0, best_accuracy = -1, running = 0;
    std::vector<at::Tensor> best;
    for (int64_t step = 0; step < config.steps; ++step) {
      if (config.cancel != nullptr && config.cancel->load()) {
        return absl::CancelledError(absl::StrCat("stopped after ", step, " of ", config.steps, " steps"));
      }
      at::Tensor x, y;
      next_batch(&x, &y);
      const at::Tensor logits = net.Forward(x, /*training=*/true);
      at::Tensor loss = at::nll_loss(at::log_softmax(logits, 1), y);
      const double ce = loss.item<double>();
      if (learn) {
        const double ramp = config.ramp >= 0
                                ? config.ramp
                                : PenaltyRamp(config.step_offset + step, phase_steps);
        const at::Tensor penalty = PenaltyTensor(net, config.budget, ramp);
        report.penalty = penalty.item<double>();
        loss = loss + penalty;
      }
      weights.zero_grad();
      if (quantizers) quantizers->zero_grad();
      if (log_quantizers) log_quantizers->ZeroGrad();
      loss.backward();
      if (config.lr_schedule != LrSchedule::kConstant) {
        const double lr = config.learning_rate * LrFactor(config.lr_schedule, step, config.steps);
        for (auto& group : weights.param_groups()) {
          static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
        }
      }
      weights.step();
      if (learn && (step + 1) % config.quantizer_every == 0) {
        if (quantizers) quantizers->step();
        if (log_quantizers) log_quantizers->Step();
        net.Constrain();
      }
      const double batch_correct = logits.argmax(1).eq(y).sum().item<double>();
      running = 0.9 * running + 0.1 * batch_correct / y.size(0);
      if (step >= config.steps - tail) {
        loss_sum += ce * y.size(0);
        correct += batch_correct;
        seen += y.size(0);
      }
      if (learn && step > config.steps / 2 && running > best_accuracy &&
          WithinBudget(net.Size(), config.budget)) {
        best_accuracy = running;
        best = net.Snapshot();
        report.met_budget = true;
      }
      if (progress) progress(step + 1, ce, running);
    }
    if (learn && !best.empty()) {
      net.Restore(best);
      report.restored_best = true;
    }
    net.SetQuantizersTrainable(false);
    report.steps = config.steps;
    report.loss = loss_sum / std::max(1.0, seen);
    report.accuracy = correct / std::max(1.0, seen);
    report.size = net.Size();
    return absl::OkStatus();
  }));
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

absl::StatusOr<double> EvaluateQuant(QuantNet& net, const Dataset& data, int batch_size) {
  if (data.size() == 0) return absl::InvalidArgumentError("no evaluation data");
  int64_t correct = 0;
  RETURN_IF_ERROR(CallTorch("evaluating the quantized network", [&] {
    at::NoGradGuard no_grad;
    for (int64_t begin = 0; begin < data.size(); begin += batch_size) {
      const int64_t size = std::min<int64_t>(batch_size, data.size() - begin);
      const at::Tensor logits = net.Forward(data.Range(begin, size), false);
      correct += logits.argmax(1).eq(data.labels.narrow(0, begin, size)).sum().item<int64_t>();
    }
    return absl::OkStatus();
  }));
  return static_cast<double>(correct) / data.size();
}

}  // namespace fedge
