// Forward of the adapted linear layer: one masked GEMM pair for all experts.
#include "adapters/routed_lora_linear.h"

#include <cmath>

#include "adapters/block_routing.h"
#include "core/error.h"

namespace remora {

double adapter_scale(const ModuleAdapterSpec& spec) {
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
  const int64_t width = spec.num_experts * spec.rank;
  const auto options = at::TensorOptions().dtype(at::kFloat).device(base->weight.device());
  // PEFT's init: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(d_in), 1/sqrt(d_in)), B = 0, so the
  // adapted model starts equal to the base.
  const double bound = 1.0 / std::sqrt(static_cast<double>(d_in));
  at::Tensor a = at::empty({shares_a() ? spec.rank : width, d_in}, at::kFloat);
  if (generator) {
    a.uniform_(-bound, bound, *generator);
  } else {
    a.uniform_(-bound, bound);
  }
  lora_A = register_parameter("lora_A", a.to(options.device()));
  lora_B = register_parameter("lora_B", at::zeros({d_out, width}, options));
  if (own_router) router = register_module("router", std::move(own_router));
}

at::Tensor RoutedLoraLinear::forward(const at::Tensor& x) {
  at::Tensor y = base->forward(x);
  return y + update(x, y.scalar_type());
}

at::Tensor RoutedLoraLinear::update(const at::Tensor& x, at::ScalarType dtype) {
  // The adapter's GEMMs run in the activations' dtype (bf16 with a bf16 base) on casts of the fp32
  // master factors: casting the small factors costs far less than casting every activation.
  const auto shape = x.sizes();
  at::Tensor flat = x.reshape({-1, shape.back()}).to(dtype);  // [N, d_in]
  at::Tensor adapter_input = (is_training() && dropout_ > 0) ? at::dropout(flat, dropout_, true) : flat;
  at::Tensor hidden = at::linear(adapter_input, lora_A.to(dtype));  // [N, n r] (Hydra: [N, r])
  if (shares_a()) hidden = hidden.repeat({1, spec_.num_experts});
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
    hidden = hidden * gate.repeat_interleave(spec_.rank, 1).to(dtype);
  }
  at::Tensor update = at::linear(hidden, lora_B.to(dtype)).mul_(scale_);  // [N, d_out]
  std::vector<int64_t> out_shape(shape.begin(), shape.end());
  out_shape.back() = update.size(-1);
  return update.view(out_shape);
}

at::Tensor RoutedLoraLinear::delta_weight() const {
  REMORA_CHECK(!is_routed(spec_.method), path_, ": a ", method_name(spec_.method),
               " adapter has no single dense update");
  return at::matmul(lora_B, lora_A) * scale_;
}

int64_t RoutedLoraLinear::activated_parameters() const {
  const int64_t d_in = base->in_features(), d_out = base->out_features();
  const int64_t active = spec_.top_k;  // experts a token activates (all n for dense mixtures)
  const int64_t a = shares_a() ? spec_.rank * d_in : active * spec_.rank * d_in;
  return a + active * spec_.rank * d_out;
}

void RoutedLoraLinear::pretty_print(std::ostream& stream) const {
  stream << "RoutedLoraLinear(" << method_name(spec_.method) << ", in=" << in_features()
         << ", out=" << out_features() << ", experts=" << spec_.num_experts << "x r" << spec_.rank
         << ", top_k=" << spec_.top_k << ", scale=" << scale_ << ")";
}

}  // namespace remora
