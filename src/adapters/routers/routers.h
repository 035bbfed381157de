// The routers: dense softmax (MoLoRA, HydraLoRA, MoLE), softmax top-k (MixLoRA, MALoRA), ReMix, SMoRA,
// LoRA-Flow's fusion gate and LoraRetriever's similarity routing.
#pragma once

#include "adapters/adapter_config.h"
#include "adapters/routing.h"

namespace remora {

// g = softmax(P x), every expert active. P [n, d], no bias.
class DenseSoftmaxRouter : public Router {
 public:
  DenseSoftmaxRouter(int64_t input_size, int64_t experts, double init_std);
  Gate route(const at::Tensor& x, const at::Tensor& valid, int64_t rows, RoutingState& state) override;
  int64_t num_experts() const override { return weight.size(0); }
  int64_t active_experts() const override { return weight.size(0); }
  at::Tensor weight;  // [n, d]
};

// p = softmax(P x); keep the top k; renormalise to sum 1. In training adds the Switch-style balance
// loss coef * n * sum_i f_i * mean_p_i, f_i = share of tokens whose top k contains i, either over
// this router's tokens alone (kLayer) or over every top-k router's tokens of the forward (kPooled,
// collected in RoutingState).
class TopkRouter : public Router {
 public:
  TopkRouter(int64_t input_size, int64_t experts, int64_t k, double balance_coef, double init_std,
             BalanceLossScope scope = BalanceLossScope::kPooled);
  Gate route(const at::Tensor& x, const at::Tensor& valid, int64_t rows, RoutingState& state) override;
  int64_t num_experts() const override { return weight.size(0); }
  int64_t active_experts() const override { return k_; }
  at::Tensor weight;  // [n, d]

 private:
  int64_t k_;
  double balance_coef_;
  BalanceLossScope scope_;
};

// q = softmax(P x). Training (or sample_at_inference): k experts drawn without replacement from q by
// Gumbel-top-k, the Plackett-Luce log-probability of each ordered selection added to
// state.log_prob per input; inference: the deterministic top k of q. Every selected expert gets the
// same constant weight omega, so no gradient reaches P through the gate: it learns by RLOO.
class RemixRouter : public Router {
 public:
  RemixRouter(int64_t input_size, int64_t experts, int64_t k, double omega, bool sample_at_inference,
              double init_std);
  Gate route(const at::Tensor& x, const at::Tensor& valid, int64_t rows, RoutingState& state) override;
  int64_t num_experts() const override { return weight.size(0); }
  int64_t active_experts() const override { return k_; }
  double omega() const { return omega_; }
  at::Tensor weight;  // [n, d]

 private:
  int64_t k_;
  double omega_;
  bool sample_at_inference_;
};

// SMoRA as its authors' code runs it: s = sigmoid(W x), one score per block of `rank_partition`
// ranks, repeated to every rank; s~ = s + b with b a non-learnable per-rank balancing bias; the top
// k ranks of s~; g_i = k s~_i / sum of the selected s~ (so the bias enters the gate values too). In
// training, after routing: b_i += u * sign(mean(c) - c_i), c_i = real tokens whose top k contains i.
// W starts as PyTorch's Linear default (Kaiming-uniform), as in the official code.
class SmoraRouter : public Router {
 public:
  SmoraRouter(int64_t input_size, int64_t ranks, int64_t k, double bias_rate, int64_t rank_partition = 1);
  Gate route(const at::Tensor& x, const at::Tensor& valid, int64_t rows, RoutingState& state) override;
  void initialize(double init_std, at::Generator& generator) override;
  int64_t num_experts() const override { return balance_bias.size(0); }
  int64_t active_experts() const override { return k_; }
  at::Tensor weight;        // [R / rank_partition, d]
  at::Tensor balance_bias;  // [R] buffer

 private:
  int64_t k_;
  double bias_rate_;
  int64_t rank_partition_;
};

// LoRA-Flow (Wang et al. 2024): w = softmax(W x) + b per token, the bias added after the softmax and
// the weights not renormalised; W [n, d] and b [n] start at zero (every LoRA at 1/n).
class LoraFlowRouter : public Router {
 public:
  LoraFlowRouter(int64_t input_size, int64_t experts);
  Gate route(const at::Tensor& x, const at::Tensor& valid, int64_t rows, RoutingState& state) override;
  void initialize(double init_std, at::Generator& generator) override;
  int64_t num_experts() const override { return weight.size(0); }
  int64_t active_experts() const override { return weight.size(0); }
  at::Tensor weight;  // [n, d]
  at::Tensor bias;    // [n]
};

// LoraRetriever (Zhao et al. 2024), untrained: the k experts whose centroid (the mean embedding of a
// sample of their training prompts) is most cosine-similar to the sequence's prompt embedding, each
// at weight 1/k. Reads state.sequence_embedding [rows, d], not its input.
class RetrievalRouter : public Router {
 public:
  RetrievalRouter(int64_t input_size, int64_t experts, int64_t k);
  Gate route(const at::Tensor& x, const at::Tensor& valid, int64_t rows, RoutingState& state) override;
  void initialize(double init_std, at::Generator& generator) override;
  int64_t num_experts() const override { return centroids.size(0); }
  int64_t active_experts() const override { return k_; }
  // cosine(embedding [rows, d], every centroid) -> [rows, n]
  at::Tensor similarity(const at::Tensor& embedding) const;
  at::Tensor centroids;  // [n, d] buffer

 private:
  int64_t k_;
};

// ReMix's constant weight: omega_alpha / (k r) or omega_alpha / sqrt(k r); over composed experts
// (each already scaled as its own folder says), 1 / k: the k selected LoRAs averaged.
double remix_omega(const AdapterConfig& config, int64_t rank);

// The router `spec.method` needs, with input size `input_size`.
std::shared_ptr<Router> make_router(const ModuleAdapterSpec& spec, const AdapterConfig& config,
                                    int64_t input_size);

}  // namespace remora
