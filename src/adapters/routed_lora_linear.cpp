// Forward of the adapted linear layer: one masked GEMM pair for all experts.
#include "adapters/routed_lora_linear.h"

#include <cmath>

#include "adapters/block_routing.h"
#include "core/error.h"
#include "model/decode_linear.h"

namespace remora {
namespace {

// at::linear of the adapter's rows [N, in]. In one-position decode steps (generation, serving) the
// rows go through the decode kernel, as the base projection's do: a bf16 at::linear of a few rows
// costs tens of µs whatever its size, and an adapter adds two or three of them per projection.
at::Tensor adapter_linear(const at::Tensor& rows, const at::Tensor& weight, bool decode_step) {
  if (decode_step) {
    const at::Tensor steps = rows.unsqueeze(1);  // [N, 1, in], the kernel's shape of a decode step
    if (decode_linear_applies(steps, weight)) return decode_linear(steps, weight, at::Tensor()).squeeze(1);
  }
  return at::linear(rows, weight);
}

}  // namespace

double adapter_scale(const ModuleAdapterSpec& spec) {
  if (spec.composed()) return 1.0;
  switch (spec.method) {
    case AdapterMethod::kRslora: return spec.alpha / std::sqrt(static_cast<double>(spec.rank));
    case AdapterMethod::kRemix: return 1.0;
    case AdapterMethod::kSmora: return spec.alpha / static_cast<double>(spec.top_k);
    default: return spec.alpha / static_cast<double>(spec.rank);
  }
}

RoutedLoraLinear::RoutedLoraLinear(std::shared_ptr<Linear> base_layer, const ModuleAdapterSpec& spec,
                                   double scale, double dropout, std::shared_ptr<Router> own_router,
                                   std::shared_ptr<BlockRouting> block, RoutingState* state,
                                   std::string path, std::optional<at::Generator> generator)
    : spec_(spec), scale_(scale), dropout_(dropout), block_(std::move(block)), state_(state),
      path_(std::move(path)) {
  base = register_module("base_layer", std::move(base_layer));
  const int64_t d_in = base->in_features(), d_out = base->out_features();
  const auto options = at::TensorOptions().dtype(at::kFloat).device(base->weight.device());
  // PEFT's init: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), B = 0, so the
  // adapted model starts equal to the base.
  const auto kaiming_uniform = [&](std::vector<int64_t> shape) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(shape.back()));
    at::Tensor t = at::empty(shape, at::kFloat);
    return generator ? t.uniform_(-bound, bound, *generator) : t.uniform_(-bound, bound);
  };
  lora_A = register_parameter("lora_A", kaiming_uniform({shares_a() ? spec.rank : width(), d_in}).to(options.device()));
  if (spec.method == AdapterMethod::kMultilora) {
    // MultiLoRA changes LoRA's init: every B_i is Kaiming-uniform too, and the update starts at zero
    // through its learnable scales instead (as the reference implementation we follow; README).
    at::Tensor b = at::empty({d_out, width()}, at::kFloat);
    for (int64_t i = 0; i < spec.num_experts; ++i) {
      b.narrow(1, i * spec.rank, spec.rank).copy_(kaiming_uniform({d_out, spec.rank}));
    }
    lora_B = register_parameter("lora_B", b.to(options.device()));
    lora_scaling = register_parameter("lora_scaling", at::zeros({spec.num_experts, d_out}, options));
  } else {
    lora_B = register_parameter("lora_B", at::zeros({d_out, width()}, options));
  }
  if (spec.method == AdapterMethod::kMalora) {
    lora_P = register_parameter("lora_P", kaiming_uniform({width(), spec.rank}).to(options.device()));
  }
  if (spec.dora) {
    // m starts at ||W0||_row, so that with B = 0 the layer is the base (PEFT's update_layer).
    at::NoGradGuard no_grad;
    lora_magnitude_vector = register_parameter("lora_magnitude_vector", base->weight.to(at::kFloat).norm(2, {1}));
  }
  if (spec.composed()) {
    std::vector<int64_t> owner;
    std::vector<float> scale;
    for (size_t i = 0; i < spec.expert_ranks.size(); ++i) {
      owner.insert(owner.end(), spec.expert_ranks[i], static_cast<int64_t>(i));
      scale.insert(scale.end(), spec.expert_ranks[i], static_cast<float>(spec.expert_scales[i]));
    }
    rank_owner_ = register_buffer("rank_owner", at::tensor(owner, at::kLong).to(options.device()));
    rank_scale_ = register_buffer("rank_scale", at::tensor(scale, at::kFloat).to(options.device()));
  }
  if (own_router) router = register_module("router", std::move(own_router));
}

int64_t RoutedLoraLinear::width() const {
  if (!spec_.composed()) return spec_.num_experts * spec_.rank;
  int64_t total = 0;
  for (int64_t r : spec_.expert_ranks) total += r;
  return total;
}

std::vector<std::pair<std::string, at::Tensor>> RoutedLoraLinear::named_factors() const {
  std::vector<std::pair<std::string, at::Tensor>> out = {{"lora_A.weight", lora_A}, {"lora_B.weight", lora_B}};
  if (lora_P.defined()) out.emplace_back("lora_P.weight", lora_P);
  if (lora_scaling.defined()) out.emplace_back("lora_scaling", lora_scaling);
  if (lora_magnitude_vector.defined()) out.emplace_back("lora_magnitude_vector", lora_magnitude_vector);
  return out;
}

at::Tensor RoutedLoraLinear::expand_gate(const at::Tensor& gate) const {
  if (spec_.composed()) return gate.index_select(1, rank_owner_) * rank_scale_;
  return gate.repeat_interleave(spec_.rank, 1);
}

at::Tensor RoutedLoraLinear::forward(const at::Tensor& x) {
  at::Tensor y = base->forward(x);
  if (state_ && state_->bypass_adapters) return y;
  return y + update(x, y.scalar_type());
}

at::Tensor RoutedLoraLinear::update(const at::Tensor& x, at::ScalarType dtype) {
  // The adapter's GEMMs run in the activations' dtype (bf16 with a bf16 base) on casts of the fp32
  // master factors: casting the small factors costs far less than casting every activation, and
  // they are cast again only after the optimizer has changed them.
  const auto shape = x.sizes();
  at::Tensor flat = x.reshape({-1, shape.back()}).to(dtype);  // [N, d_in]
  at::Tensor adapter_input = (is_training() && dropout_ > 0) ? at::dropout(flat, dropout_, true) : flat;
  const bool decode_step = shape.size() >= 2 && shape[shape.size() - 2] == 1;
  // [N, n r] (Hydra, MALoRA: [N, r])
  at::Tensor hidden = adapter_linear(adapter_input, a_cast_.get(lora_A, dtype), decode_step);
  if (lora_P.defined()) {
    // MALoRA: P_i S x for every expert, [N, n r]
    hidden = adapter_linear(hidden, p_cast_.get(lora_P, dtype), decode_step);
  } else if (shares_a()) {
    hidden = hidden.repeat({1, spec_.num_experts});
  }
  if (is_routed(spec_.method)) {
    at::Tensor gate;
    if (block_) {
      gate = block_->gate();
    } else {
      // The block hook records which tokens are real; used standalone, every row counts.
      const at::Tensor& mask = state_->token_mask;
      const bool known = mask.defined() && mask.numel() == flat.size(0);
      at::Tensor valid = known ? mask.reshape({-1})
                               : at::ones({flat.size(0)}, at::TensorOptions().dtype(at::kBool).device(flat.device()));
      const int64_t rows = known ? mask.size(0) : 1;
      // SMoRA's authors route on the dropped-out input the LoRA factors see; the other routers read x.
      const at::Tensor& router_input = spec_.method == AdapterMethod::kSmora ? adapter_input : flat;
      Gate decision = router->route(router_input, valid, rows, *state_);  // routers work in fp32
      if (state_->capture) state_->capture->add(path_ + ".router", decision, valid);
      gate = decision.weights;
    }
    REMORA_CHECK(gate.size(0) == hidden.size(0), path_, ": gate has ", gate.size(0),
                 " rows for ", hidden.size(0), " tokens");
    // The scale rides on the narrow [N, n r] rows rather than on the [N, d_out] update.
    hidden = hidden * expand_gate(gate * scale_).to(dtype);
  } else if (scale_ != 1.0) {
    hidden = hidden * scale_;
  }
  at::Tensor update;
  if (lora_scaling.defined()) {
    // MultiLoRA: each LoRA's output scaled per channel, then summed: [N, n, d_out] -> [N, d_out].
    at::Tensor per_expert = at::einsum("tkr,okr->tko", {hidden.view({hidden.size(0), spec_.num_experts, spec_.rank}),
                                                        b_cast_.get(lora_B, dtype).view({lora_B.size(0), spec_.num_experts, spec_.rank})});
    update = (per_expert * scaling_cast_.get(lora_scaling, dtype)).sum(1);
  } else {
    update = adapter_linear(hidden, b_cast_.get(lora_B, dtype), decode_step);  // [N, d_out]
  }
  if (lora_magnitude_vector.defined()) {
    // DoRA as PEFT runs it: (m/||W'|| - 1) W0 x + m/||W'|| scale B A x, x the (dropped-out) adapter input.
    at::Tensor magnitude_scale = dora_scale().to(dtype);
    update = (magnitude_scale - 1) * at::linear(adapter_input, base->weight.to(dtype)) + magnitude_scale * update;
  }
  std::vector<int64_t> out_shape(shape.begin(), shape.end());
  out_shape.back() = update.size(-1);
  return update.view(out_shape);
}

at::Tensor RoutedLoraLinear::dora_scale() const {
  at::Tensor updated = base->weight.to(at::kFloat) + at::matmul(lora_B, lora_A) * scale_;
  return lora_magnitude_vector / updated.norm(2, {1}).detach();
}

at::Tensor RoutedLoraLinear::delta_weight() const {
  REMORA_CHECK(!is_routed(spec_.method), path_, ": a ", method_name(spec_.method),
               " adapter has no single dense update");
  if (lora_scaling.defined()) {
    // sum_i diag(s_i) B_i A_i
    at::Tensor b = lora_B.view({lora_B.size(0), spec_.num_experts, spec_.rank}) * lora_scaling.t().unsqueeze(-1);
    return at::matmul(b.reshape({lora_B.size(0), -1}), lora_A) * scale_;
  }
  at::Tensor delta = at::matmul(lora_B, lora_A) * scale_;
  if (!lora_magnitude_vector.defined()) return delta;
  // DoRA folds to m (W0 + delta) / ||W0 + delta||_row; the difference from W0:
  const at::Tensor w0 = base->weight.to(at::kFloat);
  return dora_scale().unsqueeze(1) * (w0 + delta) - w0;
}

int64_t RoutedLoraLinear::activated_parameters() const {
  const int64_t d_in = base->in_features(), d_out = base->out_features();
  const int64_t active = spec_.top_k;  // experts a token activates (all n for dense mixtures)
  // Composed experts differ in rank: k of them activate k / n of the stacked ranks on average.
  const int64_t ranks = spec_.composed() ? width() * active / spec_.num_experts : active * spec_.rank;
  int64_t total = (shares_a() ? spec_.rank * d_in : ranks * d_in) + ranks * d_out;
  if (lora_P.defined()) total += ranks * spec_.rank;
  if (lora_scaling.defined()) total += lora_scaling.numel();
  if (lora_magnitude_vector.defined()) total += lora_magnitude_vector.numel();
  return total;
}

void RoutedLoraLinear::pretty_print(std::ostream& stream) const {
  stream << "RoutedLoraLinear(" << method_name(spec_.method) << ", in=" << in_features()
         << ", out=" << out_features() << ", experts=" << spec_.num_experts << "x r" << spec_.rank
         << ", top_k=" << spec_.top_k << ", scale=" << scale_ << ")";
}

}  // namespace remora
