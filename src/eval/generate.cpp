// The generation loop.
#include "eval/generate.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

#include "core/error.h"

namespace remora {

void require_in_vocab(const std::vector<int64_t>& ids, const CausalLM& model) {
  const int64_t vocab = model.config().vocab_size;
  for (const int64_t id : ids) {
    if (id < 0 || id >= vocab) {
      fail("token id ", id, " is outside the model's vocab_size ", vocab, " (tokenizer and model do not match)");
    }
  }
}

std::vector<std::vector<int64_t>> generate(CausalLM& model,
                                           const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerationOptions& options,
                                           const TokenCallback& on_token) {
  options.sampling.validate();
  REMORA_CHECK(!prompts.empty(), "generate: no prompts");
  REMORA_CHECK(options.max_new_tokens >= 0, "--max-new-tokens must be >= 0");
  const int64_t context = model.config().max_position_embeddings;
  REMORA_CHECK(options.max_new_tokens <= context, "--max-new-tokens: ", options.max_new_tokens,
               " is more than the model's context of ", context);
  const int64_t B = static_cast<int64_t>(prompts.size());
  int64_t longest = 0;
  for (size_t row = 0; row < prompts.size(); ++row) {
    REMORA_CHECK(!prompts[row].empty(), "generate: prompt ", row, " is empty");
    REMORA_CHECK(static_cast<int64_t>(prompts[row].size()) <= context, "prompt ", row, " has ", prompts[row].size(),
                 " tokens; the model's context is ", context, " (max_position_embeddings)");
    require_in_vocab(prompts[row], model);
    longest = std::max<int64_t>(longest, prompts[row].size());
  }

  at::NoGradGuard no_grad;
  const auto device = model.options().device();
  // Left padding puts every row's last prompt token in the last column.
  at::Tensor ids = at::zeros({B, longest}, at::kLong);
  at::Tensor mask = at::zeros({B, longest}, at::kLong);
  for (int64_t row = 0; row < B; ++row) {
    const auto& prompt = prompts[row];
    const int64_t pad = longest - static_cast<int64_t>(prompt.size());
    for (size_t t = 0; t < prompt.size(); ++t) {
      ids[row][pad + t] = prompt[t];
      mask[row][pad + t] = 1;
    }
  }
  ids = ids.to(device);
  mask = mask.to(device);
  const at::Tensor prompt_mask = mask;

  std::vector<std::vector<int64_t>> outputs(B);
  std::vector<bool> finished(B, false);
  REMORA_CHECK(options.row_streams.empty() || static_cast<int64_t>(options.row_streams.size()) == B,
               "generate: ", options.row_streams.size(), " row streams for ", B, " prompts");
  std::vector<at::Generator> generators;
  for (int64_t row = 0; row < B; ++row) {
    const uint64_t stream = options.row_streams.empty() ? row : options.row_streams[row];
    // Distinct, well-spread seeds per stream (the golden-ratio increment of splitmix64).
    generators.push_back(at::make_generator<at::CPUGeneratorImpl>(options.sampling.seed + stream * 0x9E3779B97F4A7C15ULL));
  }
  KVCache cache(model.config().num_layers, longest + options.max_new_tokens);
  at::Tensor step_ids = ids, step_mask = mask;
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    // Without a cache the whole sequence is recomputed; sequence-level routing still decides from
    // the prompt alone, as it does with the cache.
    at::Tensor hidden;
    if (options.use_cache) {
      hidden = model.hidden_states(step_ids, step_mask, &cache);
    } else {
      at::Tensor generated = at::zeros({B, ids.size(1) - longest}, prompt_mask.options());
      hidden = model.hidden_states(ids, mask, nullptr, at::cat({prompt_mask, generated}, 1));
    }
    at::Tensor last = model.logits(hidden.select(1, hidden.size(1) - 1));  // [B, V]
    at::Tensor next;
    if (options.sampling.temperature > 0) {
      std::vector<at::Tensor> rows;
      for (int64_t row = 0; row < B; ++row) {
        rows.push_back(choose_next_tokens(last.narrow(0, row, 1), options.sampling, generators[row]));
      }
      next = at::cat(rows);
    } else {
      next = choose_next_tokens(last, options.sampling, generators[0]);  // greedy: no draws
    }
    const auto chosen = next.accessor<int64_t, 1>();
    for (int64_t row = 0; row < B; ++row) {
      if (finished[row]) continue;
      outputs[row].push_back(chosen[row]);
      const auto& eos = options.eos_token_ids;
      if (std::find(eos.begin(), eos.end(), chosen[row]) != eos.end()) finished[row] = true;
      if (on_token && !on_token(row, chosen[row])) finished[row] = true;
    }
    if (std::all_of(finished.begin(), finished.end(), [](bool f) { return f; })) break;
    // A finished row keeps decoding its own (discarded) tokens: rows never see each other.
    step_ids = next.to(device).unsqueeze(1);
    step_mask = at::ones({B, 1}, mask.options());
    if (!options.use_cache) {
      ids = at::cat({ids, step_ids}, 1);
      mask = at::cat({mask, step_mask}, 1);
    }
  }
  return outputs;
}

}  // namespace remora
