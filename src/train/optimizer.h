// AdamW over adapter (or all) parameters with separate router settings, and the LR schedule.
#pragma once

#include <torch/optim/adamw.h>

#include <memory>
#include <vector>

#include "train/recipe.h"

namespace remora {

// Parameter groups: 0 = weights (lr, weight_decay), 1 = routers, biases and norms (router_lr for
// routers, never weight decay). Empty groups are left out.
std::unique_ptr<torch::optim::AdamW> make_optimizer(const std::vector<at::Tensor>& decayed,
                                                    const std::vector<at::Tensor>& routers,
                                                    const std::vector<at::Tensor>& not_decayed,
                                                    const Recipe& recipe);

// Multiplier of the peak learning rate at `step` (0-based) of `total`: linear warmup, then
// constant, linear or cosine decay to min_lr_ratio.
double lr_factor(const Recipe& recipe, int64_t step, int64_t total);

// Sets every group's lr to its peak times `factor`.
void apply_lr(torch::optim::AdamW& optimizer, const std::vector<double>& peaks, double factor);

// The L2 norm of all the gradients of `parameters` (0 if none has one).
double gradient_norm(const std::vector<at::Tensor>& parameters);

// Clips the global L2 norm of the gradients to max_norm (0: no clipping); returns the norm before.
double clip_gradients(const std::vector<at::Tensor>& parameters, double max_norm);

// Gradient norms before clipping of the adapters (or weights) and of the routers.
struct GradientNorms {
  double weights = 0;
  double routers = 0;
};
// Clips both groups by one global norm (torch.nn.utils.clip_grad_norm_ over all of them).
GradientNorms clip_gradients_jointly(const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& routers,
                                     double max_norm);

}  // namespace remora
