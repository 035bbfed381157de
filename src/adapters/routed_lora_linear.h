// The one adapted linear layer every method shares: frozen base + stacked expert factors + a gate.
//
//   y = W0 x + scale * B_cat (repeat_interleave(g, r) ⊙ (A_cat x))
//
// Shapes: N tokens, d_in / d_out, n experts of rank r, so A_cat [n r, d_in], B_cat [d_out, n r]
// (HydraLoRA shares one A [r, d_in] between its n B heads; MALoRA shares a subspace S = A [r, d_in]
// and gives each expert a coefficient block P_i [r, r], so A_i = P_i S). Variants on top:
//   MultiLoRA:  y = W0 x + scale * sum_i s_i ⊙ (B_i A_i x), s [n, d_out] learnable, starting at 0;
//   DoRA:       y = W0 x + (m / ||W0 + scale B A||_row - 1) ⊙ W0 x + m / ||..|| ⊙ scale B A x;
//   composed:   experts of different ranks r_i, each with its own scale, the gate expanded per rank.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "adapters/adapter_config.h"
#include "adapters/factor_cast.h"
#include "adapters/routing.h"
#include "model/linear.h"

namespace remora {

// Where a gate comes from: a router of this projection's own, or a decision made once for the
// whole block (held by a BlockRouting the block's input hook fills).
class BlockRouting;

class RoutedLoraLinear : public Projection {
 public:
  // `router` is this projection's own (module-scoped methods) or nullptr; `block` is the block's
  // shared decision (block-scoped methods) or nullptr; plain LoRA has neither.
  RoutedLoraLinear(std::shared_ptr<Linear> base, const ModuleAdapterSpec& spec, double scale,
                   double dropout, std::shared_ptr<Router> router,
                   std::shared_ptr<BlockRouting> block, RoutingState* state, std::string path,
                   std::optional<at::Generator> generator = std::nullopt);

  at::Tensor forward(const at::Tensor& x) override;
  // The adapter's term alone, scale * B (gate ⊙ A x), in `dtype` and shaped like the output: what
  // forward adds to the base layer's output (serving adds it to a subset of a batch's rows).
  at::Tensor update(const at::Tensor& x, at::ScalarType dtype);
  int64_t in_features() const override { return base->in_features(); }
  int64_t out_features() const override { return base->out_features(); }
  void pretty_print(std::ostream& stream) const override;

  // scale * B_cat A_cat [d_out, d_in] in fp32: the dense update a mergeable (n = 1) adapter adds.
  at::Tensor delta_weight() const;
  // Adapter parameters a token activates (the paper's budget unit), router excluded.
  int64_t activated_parameters() const;

  const ModuleAdapterSpec& spec() const { return spec_; }
  const std::string& path() const { return path_; }
  double scale() const { return scale_; }
  bool shares_a() const { return spec_.method == AdapterMethod::kHydra || spec_.method == AdapterMethod::kMalora; }
  // Width of the hidden layer between A and B: n r, or the sum of the composed experts' ranks.
  int64_t width() const;

  std::shared_ptr<Linear> base;     // frozen
  at::Tensor lora_A;                // [n r, d_in] fp32 (Hydra, MALoRA: [r, d_in]; composed: [sum r_i, d_in])
  at::Tensor lora_B;                // [d_out, n r] fp32
  at::Tensor lora_P;                // MALoRA: [n r, r] each expert's coefficients in the shared subspace
  at::Tensor lora_scaling;          // MultiLoRA: [n, d_out]
  at::Tensor lora_magnitude_vector; // DoRA: [d_out] m, starting at ||W0||_row
  std::shared_ptr<Router> router;   // module-scoped router or nullptr

  // Every trainable factor with the suffix it is saved under (PEFT's names where PEFT has them).
  std::vector<std::pair<std::string, at::Tensor>> named_factors() const;
  // DoRA: m / ||W0 + scale B A||_row [d_out] fp32, the norm detached (as PEFT and the paper).
  at::Tensor dora_scale() const;

 private:
  // The gate [N, n] spread over the n r (composed: sum r_i) hidden columns.
  at::Tensor expand_gate(const at::Tensor& gate) const;
  at::Tensor rank_owner_;  // composed: [sum r_i] expert of each hidden column
  at::Tensor rank_scale_;  // composed: [sum r_i] that expert's own scale
  FactorCast a_cast_, b_cast_, p_cast_, scaling_cast_;  // the factors in the activations' dtype
  ModuleAdapterSpec spec_;
  double scale_;
  double dropout_;
  std::shared_ptr<BlockRouting> block_;
  RoutingState* state_;
  std::string path_;
};

// The gate of an adapter's scale for a method: alpha / r (LoRA and the mixtures), alpha / sqrt(r)
// (rsLoRA), 1 (ReMix: the constant weight omega is in the gate; composed: each expert's own scale is
// applied per rank), alpha / k (SMoRA).
double adapter_scale(const ModuleAdapterSpec& spec);

}  // namespace remora
