// The REINFORCE leave-one-out objective that trains ReMix's routers (spec section 3).
#pragma once

#include <ATen/ATen.h>

#include "adapters/adapter_config.h"

namespace remora {

struct RlooObjective {
  at::Tensor objective;        // scalar to backpropagate
  double mean_loss = 0;        // mean over samples and inputs of L
  double advantage_spread = 0; // standard deviation of the advantages L_m - mean L (0: no signal)
  double mean_log_prob = 0;    // mean over samples and inputs of log Q
};

// losses L [M, B] (per routed sample m and input b, autograd-connected to the adapters) and
// log_probs logQ [M, B] (of each sample's selections, connected to the routers), and optional
// per-input weights w [B] (default 1/B; a trainer passes each input's share of the step's loss
// tokens so the loss term is the token-normalised mean). Returns
//   sum_b w_b [ mean_m L_mb + sum_m stopgrad((L_mb - mean_m L_mb) / (M - 1)) * logQ_mb ]
// so one backward gives the adapters the gradient of the mean loss and the routers the unbiased
// RLOO estimate of grad E[L]. Throws Error unless M >= 2 (no baseline otherwise) and shapes match.
// The ablations replace the router term: kReinforce by sum_m stopgrad(L_mb / M) * logQ_mb (no
// baseline; any M), kFrozen by nothing (the routers get no gradient).
RlooObjective rloo_objective(const at::Tensor& losses, const at::Tensor& log_probs,
                             const at::Tensor& input_weights = {},
                             RouterObjective kind = RouterObjective::kRloo);

}  // namespace remora
