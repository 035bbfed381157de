// Chunked LM-head cross-entropy with a hand-written backward.
#include "model/lm_head_loss.h"

#include <torch/autograd.h>

#include <algorithm>

namespace remora {

// 4 MiB of fp32 logits a chunk: each logit needs 6 bytes while its chunk is worked on (the logits in
// the head's dtype and an fp32 copy worked in place), and the step's activations are all alive then.
int64_t lm_head_chunk_rows(int64_t vocab) { return std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(vocab, 1)); }

namespace {

// One chunk through the head, as CausalLM::logits computes it (the GEMM in the head's dtype, the
// softmax in fp32): each row's loss -log p(target) [rows] fp32, each row's argmax when asked, and
// when asked the loss's gradient in the logits, softmax - onehot(target), times `gradient_scale` [rows]
// when that is given, rounded to the head's dtype. The fp32 copy of the logits is the only other
// buffer of their size: exp, the sum and the division work in place, where log_softmax, exp and the
// cast each made a new one (12 bytes a bf16 logit, now 6).
struct ChunkLoss {
  at::Tensor loss, argmax, logit_gradient;
};
ChunkLoss chunk_loss(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& targets, bool argmax,
                     bool gradient, const at::Tensor& gradient_scale = {}) {
  ChunkLoss out;
  at::Tensor logits = at::linear(hidden.to(head.scalar_type()), head);
  if (argmax) out.argmax = logits.argmax(-1);
  at::Tensor work = logits.to(at::kFloat);  // the logits themselves when the head is fp32
  const at::Tensor index = targets.unsqueeze(1);
  const at::Tensor max = work.amax(-1, true);
  const at::Tensor target_logit = work.gather(1, index).sub_(max);
  const at::Tensor sum = work.sub_(max).exp_().sum(-1, true);  // work: exp(x - max)
  out.loss = sum.log().sub_(target_logit).squeeze(1);           // log sum exp(x - max) - (x_t - max)
  if (gradient) {
    work.div_(sum).scatter_add_(1, index, at::full({index.size(0), 1}, -1.0f, work.options()));
    if (gradient_scale.defined()) work.mul_(gradient_scale.unsqueeze(1));
    out.logit_gradient = work.is_same(logits) ? work : logits.copy_(work);
  }
  return out;
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
      ChunkLoss chunk = chunk_loss(hidden.narrow(0, start, rows), head, chunk_targets, false, hidden_gradient.defined());
      loss.narrow(0, start, rows).copy_(chunk.loss);
      if (hidden_gradient.defined()) hidden_gradient.narrow(0, start, rows).copy_(at::matmul(chunk.logit_gradient, head));
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
      const at::Tensor d_logits =
          chunk_loss(h, head, targets.narrow(0, start, rows), false, true, scale.narrow(0, start, rows)).logit_gradient;
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
    ChunkLoss chunk = chunk_loss(hidden.narrow(0, start, rows), head, chunk_targets, true, false);
    log_prob.narrow(0, start, rows).copy_(chunk.loss.neg());
    greedy.narrow(0, start, rows).copy_(chunk.argmax == chunk_targets);
  }
  return {log_prob, greedy};
}

}  // namespace remora
