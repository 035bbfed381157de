// Chunked LM-head cross-entropy with a hand-written backward (bf16 rows in one fused pass on the CPU).
#include "model/lm_head_loss.h"

#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "core/vector_math.h"

namespace remora {

// At least 256 rows a chunk, more while the chunk stays under 2^20 logits. Rows are what the head's
// GEMMs need: [rows, 1024] x [1024, 32000] in bf16 on 2 cores ran at 300 GFLOP/s with 32 rows, 660 with
// 256 and 670 with 512 (a row's logits are the same bits at any count). The logits of 256 rows take
// 4 MiB at a vocabulary of 8192, 16 at 32000 in bf16 on the CPU (fused_chunk_loss works on them in
// place; elsewhere an fp32 copy adds 4 bytes a logit), beside a step's activations of hundreds of MiB.
int64_t lm_head_chunk_rows(int64_t vocab) {
  return std::max<int64_t>(256, (int64_t{1} << 20) / std::max<int64_t>(vocab, 1));
}

namespace {

// A chunk's per-row losses, argmaxes and logit gradient (see chunk_loss).
struct ChunkLoss {
  at::Tensor loss, argmax, logit_gradient;
};

// One row of bf16 logits in one pass each for the max, the exps and the gradient, with the eager
// ops' arithmetic below (fp32 max, exp(x - max), their sum, log sum - (x_t - max); then
// bf16((exp / sum - onehot) scale) written over the logits when `gradient`). `exps` holds `vocab`
// floats. The exp is vector_exp (within 2 ulp) and the sum runs over kLanes partial sums, so the loss
// can differ from the eager ops' in its last fp32 bits. Compiled for AVX-512, AVX2 and the baseline.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) float cross_entropy_row(
    uint16_t* logits, int64_t vocab, int64_t target, float scale, bool gradient, float* exps) {
  for (int64_t j = 0; j < vocab; ++j) exps[j] = bf16_to_float(logits[j]);
  const float max = max_of(exps, vocab);
  const float sum = exp_shifted_in_place(exps, vocab, max);
  // A NaN logit is passed over by the max but reaches the sum, so the loss is NaN as amax makes it.
  const float loss = std::log(sum) - (bf16_to_float(logits[target]) - max);
  if (gradient) {
    for (int64_t j = 0; j < vocab; ++j) {
      logits[j] = float_to_bf16((exps[j] / sum - (j == target ? 1.0f : 0.0f)) * scale);
    }
  }
  return loss;
}

// The chunk's rows through cross_entropy_row, in parallel, with the same results as the eager ops
// of chunk_loss up to the exp's and the sum's last bits.
void fused_chunk_loss(const at::Tensor& logits, const at::Tensor& targets, bool gradient,
                      const at::Tensor& gradient_scale, ChunkLoss& out) {
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  const at::Tensor row_targets = targets.to(at::kLong).contiguous();
  const int64_t* target = row_targets.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    REMORA_CHECK(target[r] >= 0 && target[r] < vocab, "cross-entropy: target ", target[r], " is outside the ",
                 vocab, "-token vocabulary");
  }
  const at::Tensor scale = gradient_scale.defined() ? gradient_scale.to(at::kFloat).contiguous() : at::Tensor();
  const float* row_scale = scale.defined() ? scale.data_ptr<float>() : nullptr;
  out.loss = at::empty({rows}, logits.options().dtype(at::kFloat));
  float* loss = out.loss.data_ptr<float>();
  uint16_t* bits = mutable_bf16_bits(logits);
  parallel_for(0, rows, std::max<int64_t>(1, 32768 / vocab), [&](int64_t begin, int64_t end) {
    std::vector<float> exps(vocab);
    for (int64_t r = begin; r < end; ++r) {
      loss[r] = cross_entropy_row(bits + r * vocab, vocab, target[r], row_scale ? row_scale[r] : 1.0f, gradient,
                                  exps.data());
    }
  });
  if (gradient) out.logit_gradient = logits;
}

// One chunk through the head, as CausalLM::logits computes it (the GEMM in the head's dtype, the
// softmax in fp32): each row's loss -log p(target) [rows] fp32, each row's argmax when asked, and
// when asked the loss's gradient in the logits, softmax - onehot(target), times `gradient_scale` [rows]
// when that is given, rounded to the head's dtype. bf16 logits on the CPU go through
// fused_chunk_loss. Otherwise the fp32 copy of the logits is the only other buffer of their size:
// exp, the sum and the division work in place, where log_softmax, exp and the cast each made a new
// one (12 bytes a bf16 logit, now 6).
ChunkLoss chunk_loss(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& targets, bool argmax,
                     bool gradient, const at::Tensor& gradient_scale = {}) {
  ChunkLoss out;
  at::Tensor logits = at::linear(hidden.to(head.scalar_type()), head);
  if (argmax) out.argmax = logits.argmax(-1);
  if (logits.device().is_cpu() && logits.scalar_type() == at::kBFloat16 && logits.is_contiguous()) {
    fused_chunk_loss(logits, targets, gradient, gradient_scale, out);
    return out;
  }
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
