// Chunked LM-head cross-entropy with a hand-written backward.
#include "model/lm_head_loss.h"

#include <torch/autograd.h>

#include <algorithm>

namespace remora {

// 4 MiB of fp32 logits a chunk: the chunk's bf16 logits, fp32 logits, log-probabilities and gradient
// are all alive at once (12 bytes per logit), and at 16 MiB they were the training step's peak.
int64_t lm_head_chunk_rows(int64_t vocab) { return std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(vocab, 1)); }

namespace {

// log_softmax of one chunk's logits, computed as CausalLM::logits does: GEMM in the head's dtype.
at::Tensor chunk_log_softmax(const at::Tensor& hidden, const at::Tensor& head) {
  return at::log_softmax(at::linear(hidden.to(head.scalar_type()), head).to(at::kFloat), -1);
}

// softmax - onehot(target), the gradient of each row's cross-entropy with respect to its logits.
at::Tensor logit_gradient(at::Tensor log_probs, const at::Tensor& targets) {
  return log_probs.exp_().scatter_add_(1, targets.unsqueeze(1), at::full({targets.size(0), 1}, -1.0f, log_probs.options()));
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct TokenCrossEntropy : torch::autograd::Function<TokenCrossEntropy> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& head,
                            const at::Tensor& targets) {
    const int64_t N = hidden.size(0), chunk = lm_head_chunk_rows(head.size(0));
    const bool head_grad = head.requires_grad(), hidden_grad = hidden.requires_grad();
    at::Tensor loss = at::empty({N}, hidden.options().dtype(at::kFloat));
    // With a frozen head the gradient of loss_i in hidden_i is (softmax_i - onehot_i) head, the same
    // whatever weight the loss gets later: formed here, the backward only scales its rows.
    at::Tensor hidden_gradient;
    if (hidden_grad && !head_grad) hidden_gradient = at::empty({N, hidden.size(1)}, hidden.options().dtype(at::kFloat));
    for (int64_t start = 0; start < N; start += chunk) {
      const int64_t rows = std::min(chunk, N - start);
      const at::Tensor chunk_targets = targets.narrow(0, start, rows);
      at::Tensor log_probs = chunk_log_softmax(hidden.narrow(0, start, rows), head);
      loss.narrow(0, start, rows).copy_(log_probs.gather(1, chunk_targets.unsqueeze(1)).squeeze(1).neg());
      if (hidden_gradient.defined()) {
        at::Tensor d_logits = logit_gradient(std::move(log_probs), chunk_targets).to(head.scalar_type());
        hidden_gradient.narrow(0, start, rows).copy_(at::matmul(d_logits, head));
      }
    }
    if (hidden_gradient.defined()) {
      ctx->save_for_backward({hidden_gradient});
    } else {
      ctx->save_for_backward({hidden, head, targets});
    }
    ctx->saved_data["hidden_dtype"] = static_cast<int64_t>(hidden.scalar_type());
    return loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& scale = grads[0];  // [N] fp32
    const auto saved = ctx->get_saved_variables();
    const auto hidden_dtype = static_cast<at::ScalarType>(ctx->saved_data["hidden_dtype"].toInt());
    if (saved.size() == 1) return {(saved[0] * scale.unsqueeze(1)).to(hidden_dtype), {}, {}};
    // A trainable head (full fine-tuning): a second pass over the vocabulary, chunk by chunk.
    const at::Tensor &hidden = saved[0], &head = saved[1], &targets = saved[2];
    const int64_t N = hidden.size(0), chunk = lm_head_chunk_rows(head.size(0));
    const bool hidden_grad = ctx->needs_input_grad(0), head_grad = ctx->needs_input_grad(1);
    at::Tensor d_hidden = hidden_grad ? at::empty_like(hidden) : at::Tensor();
    at::Tensor d_head = head_grad ? at::zeros(head.sizes(), head.options().dtype(at::kFloat)) : at::Tensor();
    for (int64_t start = 0; start < N; start += chunk) {
      const int64_t rows = std::min(chunk, N - start);
      const at::Tensor h = hidden.narrow(0, start, rows).to(head.scalar_type());
      at::Tensor d_logits = logit_gradient(chunk_log_softmax(h, head), targets.narrow(0, start, rows))
                                .mul_(scale.narrow(0, start, rows).unsqueeze(1))
                                .to(head.scalar_type());
      if (hidden_grad) d_hidden.narrow(0, start, rows).copy_(at::matmul(d_logits, head));
      if (head_grad) d_head.add_(at::matmul(d_logits.t(), h));
    }
    return {d_hidden, head_grad ? d_head.to(head.scalar_type()) : at::Tensor(), {}};
  }
};

}  // namespace

at::Tensor token_cross_entropy(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& targets) {
  return TokenCrossEntropy::apply(hidden, head, targets);
}

std::pair<at::Tensor, at::Tensor> target_log_probs(const at::Tensor& hidden, const at::Tensor& head,
                                                   const at::Tensor& targets) {
  at::NoGradGuard no_grad;
  const int64_t N = hidden.size(0), chunk = lm_head_chunk_rows(head.size(0));
  at::Tensor log_prob = at::empty({N}, hidden.options().dtype(at::kFloat));
  at::Tensor greedy = at::empty({N}, hidden.options().dtype(at::kBool));
  for (int64_t start = 0; start < N; start += chunk) {
    const int64_t rows = std::min(chunk, N - start);
    const at::Tensor chunk_targets = targets.narrow(0, start, rows);
    at::Tensor log_probs = chunk_log_softmax(hidden.narrow(0, start, rows), head);
    log_prob.narrow(0, start, rows).copy_(log_probs.gather(1, chunk_targets.unsqueeze(1)).squeeze(1));
    greedy.narrow(0, start, rows).copy_(log_probs.argmax(-1) == chunk_targets);
  }
  return {log_prob, greedy};
}

}  // namespace remora
