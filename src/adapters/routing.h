// What routers produce (gates) and what one forward's routers share with the code running the model.
//
// Shapes: N routed items (tokens, or sequences with sequence routing), n experts, k active, d input.
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace remora {

// A router's decision for N items.
struct Gate {
  at::Tensor weights;   // [N, n] fp32, zero outside the active experts (autograd-connected)
  at::Tensor probs;     // [N, n] the router's distribution, for statistics (undefined: none)
  at::Tensor selected;  // [N, k] int64, active experts in selection order (undefined: dense)
};

// Per-site record of routing decisions, for ESS, load and subset statistics (spec section 4). Only
// what the statistics read is kept: a router with selections keeps its k weights, not n, and a
// distribution's entropy, not the distribution (SMoRA's 64 ranks on a 7B model's 224 projections
// over 16K tokens would otherwise be ~2 GB at a log step).
struct RoutingCapture {
  struct Record {
    int64_t experts = 0;               // n
    std::vector<at::Tensor> weights;   // each [N_valid, n] fp32 CPU; with selections [N_valid, k], in their order
    std::vector<at::Tensor> selected;  // each [N_valid, k] int32 CPU (empty for dense routers)
    std::vector<at::Tensor> entropy;   // each [N_valid] fp64 CPU: of the router's scores normalised to sum 1 (nats)
    std::vector<at::Tensor> probs;     // each [N_valid, n] fp32 CPU: the router's distribution, only with keep_probs
  };
  std::map<std::string, Record> sites;  // keyed by router path, e.g. "model.layers.3.mlp.router"
  bool keep_probs = false;              // also keep every distribution whole (n floats an item)

  void add(const std::string& site, const Gate& gate, const at::Tensor& valid);
};

struct RoutingState;

// Switch-style balance statistics of top-k routers with `n` experts, summed over the routers that
// pool them (spec section 2: coef * n * sum_i f_i P_i over all their tokens).
struct PooledBalance {
  double coef = 0;
  at::Tensor chosen;  // [n] tokens whose top k contains expert i (no gradient)
  at::Tensor probs;   // [n] sum over tokens of p_i (autograd-connected)
  at::Tensor tokens;  // scalar: real tokens counted

  // coef * n * sum_i f_i P_i with f_i = chosen_i / tokens and P_i = probs_i / tokens; with several
  // workers, chosen and tokens are first summed over them (`state`), and the sum of every worker's
  // loss (its own probs) is then the loss of the whole micro-batch.
  at::Tensor loss(const RoutingState& state) const;
};

// Shared by every router of one model. The runner resets it before a forward and reads the
// accumulated terms afterwards.
struct RoutingState {
  bool training = false;               // sample (ReMix), balance losses, SMoRA bias updates
  std::optional<at::Generator> generator;  // for Gumbel noise; the default generator if empty
  at::Tensor token_mask;               // [B, T] bool of the current forward, set by block hooks
  at::Tensor log_prob;                 // [B] sum of log Q of sampled selections (ReMix, training)
  at::Tensor aux_loss;                 // scalar: per-router balance losses, times their coefficients
  std::map<int64_t, PooledBalance> pooled_balance;  // by expert count
  RoutingCapture* capture = nullptr;   // records gates when set
  // Retrieval routing: the prompts' embedding [B, d] of this forward, which a pre-pass of the base
  // model computes (adapters bypassed while it runs).
  at::Tensor sequence_embedding;
  bool bypass_adapters = false;

  // Data-parallel training (several workers, each holding part of every micro-batch): sums no-grad
  // statistics over the workers in place, so that balance losses and SMoRA's bias updates count the
  // whole micro-batch as one process would. Unset in one process.
  std::function<void(std::vector<at::Tensor>&)> sum_over_workers;
  // Where this forward's rows sit in the micro-batch the workers share: ReMix draws the Gumbel noise
  // of the whole micro-batch [samples, rows, tokens, n] and keeps its own part, so every worker samples
  // what one process would, and every worker's generator stays in the same state.
  struct NoiseWindow {
    int64_t samples = 1;        // M: this forward's rows are M blocks of its inputs
    int64_t global_rows = 0;    // inputs in the whole micro-batch
    int64_t first_row = 0;      // this forward's first input in it
    int64_t global_tokens = 0;  // the whole micro-batch's padded length
  };
  std::optional<NoiseWindow> noise_window;
  // Activation checkpointing: values a router must see again, unchanged, when its layer is
  // recomputed in the backward (SMoRA's bias, which it updates in place right after using it).
  struct Tape {
    std::vector<at::Tensor> values;
    size_t next = 0;
    bool replaying = false;
  };
  Tape* tape = nullptr;

  // Clears the accumulators (call before each forward).
  void reset();
  void add_log_prob(const at::Tensor& per_row);
  void add_aux_loss(const at::Tensor& loss);
  void add_pooled_balance(double coef, const at::Tensor& chosen, const at::Tensor& probs, const at::Tensor& tokens);
  // Every balance term of the forward: aux_loss plus the pooled losses; undefined if there is none.
  at::Tensor auxiliary_loss() const;
  // Without a tape: `value`. Recording: keeps a copy of `value` and returns `value`. Replaying: the
  // copy kept for this call.
  at::Tensor remember(const at::Tensor& value);
  // True while a checkpointed layer is recomputed: routers then change no state of their own.
  bool replaying() const { return tape && tape->replaying; }
  // Sums `statistics` over the workers (sum_over_workers), in place; nothing in one process.
  void sum_statistics(std::vector<at::Tensor>& statistics) const;
  // Uniform noise [rows * items, n] for `rows` rows of `items` routed items each (1 for sequence
  // routing; the padded length for token routing, which in training is at least 2), from `generator`,
  // cut from the whole micro-batch's noise when noise_window is set.
  at::Tensor uniform_noise(int64_t rows, int64_t items, int64_t n) const;
};

// A router maps inputs x [N, d] to a Gate. `valid` [N] bool marks real tokens (padding never counts
// towards losses, loads or bias updates); `rows` = B, the number of model inputs the N items
// belong to (N = rows * items per row), for per-input log-probabilities.
class Router : public torch::nn::Module {
 public:
  virtual Gate route(const at::Tensor& x, const at::Tensor& valid, int64_t rows,
                     RoutingState& state) = 0;
  // Draws the router's initial weights from `generator` (default: every parameter ~ N(0, init_std)).
  virtual void initialize(double init_std, at::Generator& generator);
  virtual int64_t num_experts() const = 0;
  // Number of experts a token activates (for the activated-parameter count).
  virtual int64_t active_experts() const = 0;
};

}  // namespace remora
