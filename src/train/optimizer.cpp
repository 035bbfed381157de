// Optimizer construction, schedule and clipping.
#include "train/optimizer.h"

#include <cmath>

#include "train/fused_adamw.h"

namespace remora {

std::unique_ptr<torch::optim::AdamW> make_optimizer(const std::vector<at::Tensor>& decayed,
                                                    const std::vector<at::Tensor>& routers,
                                                    const std::vector<at::Tensor>& not_decayed,
                                                    const Recipe& recipe) {
  auto options = [&](double lr, double decay) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(lr).betas({recipe.beta1, recipe.beta2}).eps(recipe.eps).weight_decay(decay));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  // Always three groups (possibly empty) so that saved optimizer state lines up on resume.
  groups.emplace_back(decayed, options(recipe.lr, recipe.weight_decay));
  groups.emplace_back(routers, options(recipe.router_lr.value_or(recipe.lr), 0.0));
  groups.emplace_back(not_decayed, options(recipe.lr, 0.0));
  return std::make_unique<FusedAdamW>(groups, torch::optim::AdamWOptions(recipe.lr));
}

double lr_factor(const Recipe& recipe, int64_t step, int64_t total) {
  if (step < recipe.warmup_steps) return static_cast<double>(step + 1) / recipe.warmup_steps;
  const double span = std::max<int64_t>(1, total - recipe.warmup_steps);
  const double progress = std::min(1.0, (step - recipe.warmup_steps) / span);
  const double floor = recipe.min_lr_ratio;
  switch (recipe.schedule) {
    case ScheduleType::kConstant: return 1.0;
    case ScheduleType::kLinear: return floor + (1 - floor) * (1 - progress);
    case ScheduleType::kCosine: return floor + (1 - floor) * 0.5 * (1 + std::cos(M_PI * progress));
  }
  return 1.0;
}

void apply_lr(torch::optim::AdamW& optimizer, const std::vector<double>& peaks, double factor) {
  auto& groups = optimizer.param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    static_cast<torch::optim::AdamWOptions&>(groups[i].options()).lr(peaks[i] * factor);
  }
}

double gradient_norm(const std::vector<at::Tensor>& parameters) {
  std::vector<at::Tensor> norms;
  for (const auto& p : parameters) {
    if (p.grad().defined()) norms.push_back(p.grad().norm());
  }
  return norms.empty() ? 0.0 : at::stack(norms).norm().item<double>();
}

namespace {

// Scales the gradients so that a total norm `total` becomes at most max_norm.
void scale_to(const std::vector<at::Tensor>& parameters, double total, double max_norm) {
  if (max_norm <= 0 || total <= max_norm) return;
  const double scale = max_norm / (total + 1e-6);
  at::NoGradGuard no_grad;
  for (const auto& p : parameters) {
    if (p.grad().defined()) p.grad().mul_(scale);
  }
}

}  // namespace

double clip_gradients(const std::vector<at::Tensor>& parameters, double max_norm) {
  const double total = gradient_norm(parameters);
  scale_to(parameters, total, max_norm);
  return total;
}

GradientNorms clip_gradients_jointly(const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& routers,
                                     double max_norm) {
  GradientNorms norms{gradient_norm(weights), gradient_norm(routers)};
  const double total = std::hypot(norms.weights, norms.routers);
  scale_to(weights, total, max_norm);
  scale_to(routers, total, max_norm);
  return norms;
}

}  // namespace remora
