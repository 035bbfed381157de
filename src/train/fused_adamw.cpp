// AdamW's update in one pass per parameter, rounding as LibTorch's element-wise ops do.
#include "train/fused_adamw.h"

#include <ATen/record_function.h>
#include <c10/util/string_utils.h>

#include <cmath>
#include <memory>
#include <optional>
#include <string>

#include "core/parallel.h"

namespace remora {
namespace {

using torch::optim::AdamWOptions;
using torch::optim::AdamWParamState;

// Whether LibTorch's element-wise kernels on this CPU round x + a * b once (a fused multiply-add)
// or twice: its vectorised AVX2 and AVX-512 kernels fuse `add_(other, alpha)` and `addcmul_`, its
// baseline kernels do not. Asked of the kernels themselves, on a case where the two differ; nullopt
// when add_ and addcmul_ disagree (then LibTorch's own step runs).
std::optional<bool> libtorch_fuses_multiply_add() {
  static const std::optional<bool> fused = [] {
    at::NoGradGuard no_grad;
    const float x = 1.0f + std::ldexp(1.0f, -12);  // x * x = 1 + 2^-11 + 2^-24: the last bit is lost in a float
    const float once = std::fma(x, x, -1.0f), twice = x * x - 1.0f;
    const at::Tensor xs = at::full({64}, x), minus_one = at::full({64}, -1.0f);  // 64: the vectorised path
    const at::Tensor added = minus_one.clone().add_(xs, x), multiplied = minus_one.clone().addcmul_(xs, xs, 1.0);
    const auto all = [](const at::Tensor& t, float value) { return t.eq(value).all().item<bool>(); };
    if (all(added, once) && all(multiplied, once)) return std::optional<bool>(true);
    if (all(added, twice) && all(multiplied, twice)) return std::optional<bool>(false);
    return std::optional<bool>();
  }();
  return fused;
}

// One step's constants, converted to float where LibTorch converts its scalars.
struct Coefficients {
  float decay;                   // 1 - lr weight_decay (1 without decay: x * 1 = x exactly)
  float beta1, one_minus_beta1;  // exp_avg.mul_(beta1).add_(grad, 1 - beta1)
  float beta2, one_minus_beta2;  // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
  float root_correction2, eps;   // denom = exp_avg_sq.sqrt() / sqrt(1 - beta2^t) + eps
  float minus_step_size;         // p.addcdiv_(exp_avg, denom, -lr / (1 - beta1^t))
};

// The update of elements [0, n), LibTorch's ops in its order. This file is compiled without
// floating-point contraction, so every multiply-add below is fused exactly where it says std::fma.
// The coefficients come by value and the arrays restrict-qualified: otherwise a store to p could
// change them for all GCC knows, and the loop stays scalar.
template <bool kFused>
inline void update_elements(float* __restrict p, const float* __restrict g, float* __restrict m,
                            float* __restrict v, int64_t n, const Coefficients c) {
  for (int64_t i = 0; i < n; ++i) {
    const float param = p[i] * c.decay;
    float mean = m[i] * c.beta1;
    mean = kFused ? std::fma(g[i], c.one_minus_beta1, mean) : mean + g[i] * c.one_minus_beta1;
    float square = v[i] * c.beta2;
    const float weighted = c.one_minus_beta2 * g[i];
    square = kFused ? std::fma(weighted, g[i], square) : square + weighted * g[i];
    const float denom = std::sqrt(square) / c.root_correction2 + c.eps;
    p[i] = param + c.minus_step_size * mean / denom;
    m[i] = mean;
    v[i] = square;
  }
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void update_fused(
    float* p, const float* g, float* m, float* v, int64_t n, const Coefficients c) {
  update_elements<true>(p, g, m, v, n, c);
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void update_unfused(
    float* p, const float* g, float* m, float* v, int64_t n, const Coefficients c) {
  update_elements<false>(p, g, m, v, n, c);
}

bool dense_cpu_float(const at::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.layout() == at::kStrided &&
         t.is_contiguous();
}

}  // namespace

torch::Tensor FusedAdamW::step(LossClosure closure) {
  const std::optional<bool> fused = libtorch_fuses_multiply_add();
  bool fusable = fused.has_value();
  for (auto& group : param_groups_) {
    fusable = fusable && !static_cast<AdamWOptions&>(group.options()).amsgrad();
    for (const auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      fusable = fusable && dense_cpu_float(p) && dense_cpu_float(p.grad()) && p.grad().sizes() == p.sizes();
      const auto found = state_.find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      if (found != state_.end()) {
        const auto& state = static_cast<const AdamWParamState&>(*found->second);
        fusable = fusable && dense_cpu_float(state.exp_avg()) && dense_cpu_float(state.exp_avg_sq());
      }
    }
  }
  if (!fusable) return torch::optim::AdamW::step(std::move(closure));
  RECORD_FUNCTION("remora::FusedAdamW::step", std::vector<c10::IValue>());  // named in profiles

  at::NoGradGuard no_grad;
  at::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    const auto& options = static_cast<AdamWOptions&>(group.options());
    const auto [beta1, beta2] = options.betas();
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
      auto found = state_.find(key);
      if (found == state_.end()) {
        auto fresh = std::make_unique<AdamWParamState>();
        fresh->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        found = state_.emplace(key, std::move(fresh)).first;
      }
      auto& state = static_cast<AdamWParamState&>(*found->second);
      state.step(state.step() + 1);
      const double correction1 = 1 - std::pow(beta1, state.step()), correction2 = 1 - std::pow(beta2, state.step());
      const double decay = options.weight_decay() != 0 ? 1 - options.lr() * options.weight_decay() : 1.0;
      const Coefficients c{static_cast<float>(decay),
                           static_cast<float>(beta1), static_cast<float>(1 - beta1),
                           static_cast<float>(beta2), static_cast<float>(1 - beta2),
                           static_cast<float>(std::sqrt(correction2)), static_cast<float>(options.eps()),
                           static_cast<float>(-(options.lr() / correction1))};
      float* param = p.data_ptr<float>();
      const float* grad = p.grad().data_ptr<float>();
      float* mean = state.exp_avg().data_ptr<float>();
      float* square = state.exp_avg_sq().data_ptr<float>();
      parallel_for(0, p.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
        (*fused ? update_fused : update_unfused)(param + begin, grad + begin, mean + begin, square + begin,
                                                 end - begin, c);
      });
      // In-place writes through raw pointers: tell autograd and the cached casts of the factors
      // (FactorCast) that these tensors changed, as the in-place ops would have.
      for (const at::Tensor* changed : {&p, &state.exp_avg(), &state.exp_avg_sq()}) {
        changed->unsafeGetTensorImpl()->bump_version();
      }
    }
  }
  return loss;
}

}  // namespace remora
