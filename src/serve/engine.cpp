// The decode loop: admission within the cache budget, one prefill per joining request, one batched
// decode step for every running row.
#include "serve/engine.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

#include "core/error.h"
#include "core/parallel.h"
#include "eval/generate.h"
#include "eval/stop_strings.h"
#include "serve/api_error.h"
#include "serve/batch_cache.h"
#include "tokenizer/stream_decoder.h"

namespace remora {
namespace {

// LibTorch's errors carry a C++ backtrace that has no place in an API response.
std::string without_backtrace(const std::exception& e) {
  if (const auto* torch_error = dynamic_cast<const c10::Error*>(&e)) return torch_error->what_without_backtrace();
  return e.what();
}

}  // namespace

RequestState::Update RequestState::wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait_for(lock, timeout, [&] { return finished_ || !pending_.empty(); });
  Update update{std::move(pending_), finished_};
  pending_.clear();
  return update;
}

void RequestState::append(const std::string& text) {
  if (text.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_ += text;
  }
  changed_.notify_all();
}

void RequestState::finish(const std::string& reason, const std::string& error_message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    finish_reason = reason;
    error = error_message;
    finished_ = true;
  }
  changed_.notify_all();
}

struct Engine::Row {
  CompletionRequest request;
  std::shared_ptr<RequestState> state;
  at::Generator generator;
  StreamDecoder decoder;
  StopStringFilter filter;
  KVCache prompt_cache{0, 0};  // the prefilled prompt until the row joins the batch cache
  int64_t length = 0;          // positions of this row in the cache
  int64_t produced = 0;
  int64_t last_token = 0;
  bool done = false;
  std::vector<at::Tensor> sequence_decisions;  // the prompt's routing (adapters with routing: sequence)

  Row(Waiting waiting, const Tokenizer& tokenizer)
      : request(std::move(waiting.request)),
        state(std::move(waiting.state)),
        // As `generate`: one generator per sampling stream, seeded from (seed, stream).
        generator(at::make_generator<at::CPUGeneratorImpl>(request.sampling.seed + request.stream * 0x9E3779B97F4A7C15ULL)),
        decoder(tokenizer),
        filter(request.stop) {}
  // Cache columns the row may still add: one per further decode step.
  int64_t remaining() const { return done ? 0 : request.max_tokens - produced; }
};

Engine::Engine(AdapterSet& models, const Tokenizer& tokenizer, std::vector<int64_t> eos, EngineOptions options)
    : models_(models), tokenizer_(tokenizer), eos_(std::move(eos)), options_(options),
      context_(models.model().config().max_position_embeddings) {
  REMORA_CHECK(options_.max_num_seqs >= 1, "--max-num-seqs must be >= 1");
  REMORA_CHECK(options_.kv_cache_tokens >= 1, "--kv-cache-tokens must be >= 1");
  REMORA_CHECK(options_.max_queue >= 0, "--max-queue must be >= 0");
  stats_.kv_budget = options_.kv_cache_tokens;
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() { shutdown(std::chrono::milliseconds(0)); }

std::shared_ptr<RequestState> Engine::submit(CompletionRequest request) {
  const int64_t prompt = static_cast<int64_t>(request.prompt.size());
  if (prompt == 0) throw ApiError(400, "the prompt encodes to no tokens", "prompt");
  try {
    require_in_vocab(request.prompt, models_.model());
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "prompt");
  }
  if (request.max_tokens < 1) throw ApiError(400, "max_tokens must be at least 1", "max_tokens");
  if (prompt + request.max_tokens > context_) {
    throw ApiError(400, "This model's maximum context length is " + std::to_string(context_) + " tokens. However, you requested " +
                   std::to_string(prompt + request.max_tokens) + " tokens (" + std::to_string(prompt) + " in the prompt, " +
                   std::to_string(request.max_tokens) + " in the completion). Please reduce the prompt or max_tokens.",
                   "max_tokens", "context_length_exceeded");
  }
  if (prompt + request.max_tokens - 1 > options_.kv_cache_tokens) {
    throw ApiError(400, "the request needs " + std::to_string(prompt + request.max_tokens - 1) +
                   " cached positions, more than the server's --kv-cache-tokens " + std::to_string(options_.kv_cache_tokens),
                   "max_tokens");
  }
  try {
    request.sampling.validate();
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
  auto state = std::make_shared<RequestState>();
  state->prompt_tokens = prompt;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!accepting_) throw ApiError(503, "the server is shutting down");
    if (static_cast<int64_t>(queue_.size()) >= options_.max_queue) {
      throw ApiError(429, "too many requests are waiting (" + std::to_string(queue_.size()) + ", --max-queue); retry later");
    }
    queue_.push_back({std::move(request), state});
    stats_.waiting = static_cast<int64_t>(queue_.size());
    ++unfinished_;
  }
  wake_.notify_all();
  return state;
}

void Engine::shutdown(std::chrono::milliseconds drain) {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    accepting_ = false;
    wake_.wait_for(lock, drain, [&] { return unfinished_ == 0; });
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void Engine::loop() {
  at::NoGradGuard no_grad;  // grad mode is per thread
  const KernelsOnThisThread serial_kernels;  // per thread too: see core/parallel.h
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || !rows_.empty(); });
      if (stopping_) break;
    }
    try {
      step();
    } catch (const std::exception& e) {
      // A failing forward ends the requests it held, never the server.
      fail_all(std::string("generation failed: ") + without_backtrace(e));
    }
  }
  fail_all("the server shut down before the request finished");
  std::deque<Waiting> waiting;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    waiting.swap(queue_);
    stats_.waiting = 0;
  }
  for (auto& w : waiting) end_request(*w.state, "abort", "the server shut down before the request started");
}

void Engine::end_request(RequestState& state, const std::string& reason, const std::string& error) {
  state.finish(reason, error);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    --unfinished_;
    stats_.requests_finished += 1;
    stats_.prompt_tokens += state.prompt_tokens;
  }
  wake_.notify_all();  // a draining shutdown waits for the last one
}

void Engine::fail_all(const std::string& message) {
  for (auto* rows : {&rows_, &joining_}) {
    for (auto& row : *rows) {
      if (!row->done) end_request(*row->state, "abort", message);
    }
    rows->clear();
  }
  cache_ = KVCache(0, 0);
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.running = 0;
  stats_.kv_positions = 0;
}

bool Engine::fits(const Waiting& candidate) const {
  int64_t rows = 1, longest = static_cast<int64_t>(candidate.request.prompt.size());
  int64_t reserve = candidate.request.max_tokens - 1;
  auto count = [&](const Row& row) {
    if (row.done) return;  // a cancelled row still holds its place until the next re-layout
    ++rows;
    longest = std::max(longest, row.length);
    reserve = std::max(reserve, row.remaining());
  };
  for (const auto& row : rows_) count(*row);
  for (const auto& row : joining_) count(*row);
  return rows <= options_.max_num_seqs && cache_positions(rows, longest + reserve) <= options_.kv_cache_tokens;
}

std::unique_ptr<Engine::Row> Engine::prefill(Waiting waiting) {
  auto row = std::make_unique<Row>(std::move(waiting), tokenizer_);
  const auto device = models_.model().options().device();
  const int64_t P = static_cast<int64_t>(row->request.prompt.size());
  at::Tensor ids = at::tensor(row->request.prompt, at::kLong).view({1, P}).to(device);
  at::Tensor mask = at::ones({1, P}, ids.options());
  models_.set_rows({row->request.adapter});
  row->prompt_cache = KVCache(models_.model().config().num_layers, P);
  at::Tensor hidden = models_.model().hidden_states(ids, mask, &row->prompt_cache);
  at::Tensor logits = models_.model().logits(hidden.select(1, P - 1));  // [1, V]
  row->length = P;
  row->sequence_decisions = models_.sequence_decisions(row->request.adapter);
  const int64_t token = choose_next_tokens(logits, row->request.sampling, row->generator).item<int64_t>();
  row->done = emit(*row, token);
  return row;
}

bool Engine::emit(Row& row, int64_t token) {
  row.produced += 1;
  row.last_token = token;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.generated_tokens += 1;
  }
  const bool eos = std::find(eos_.begin(), eos_.end(), token) != eos_.end();
  row.state->append(row.filter.push(row.decoder.push(token)));
  std::string reason;
  if (eos || row.filter.stopped()) {
    reason = "stop";
  } else if (row.produced >= row.request.max_tokens) {
    reason = "length";
  } else {
    return false;
  }
  row.state->append(row.filter.push(row.decoder.finish()) + row.filter.finish());
  row.state->completion_tokens = row.produced;
  end_request(*row.state, reason);
  return true;
}

void Engine::step() {
  // Requests whose client left end here, before they cost another step.
  for (auto& row : rows_) {
    if (!row->done && row->state->cancelled()) {
      row->state->completion_tokens = row->produced;
      row->done = true;
      end_request(*row->state, "abort", "the client disconnected");
    }
  }
  // Admission: first come, first served; the head waits until the batch has room for it.
  while (true) {
    Waiting next;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (queue_.empty()) break;
      const bool cancelled = queue_.front().state->cancelled();
      if (!cancelled && !fits(queue_.front())) break;
      next = std::move(queue_.front());
      queue_.pop_front();
      stats_.waiting = static_cast<int64_t>(queue_.size());
    }
    if (next.state->cancelled()) {
      end_request(*next.state, "abort", "the client disconnected");
      continue;
    }
    std::shared_ptr<RequestState> state = next.state;
    try {
      std::unique_ptr<Row> row = prefill(std::move(next));
      if (!row->done) joining_.push_back(std::move(row));
    } catch (const std::exception& e) {
      end_request(*state, "abort", std::string("generation failed: ") + without_backtrace(e));  // this request only
    }
  }
  // Rows that finished leave and joining rows enter: one re-layout of the cache per change.
  const bool leaving = std::any_of(rows_.begin(), rows_.end(), [](const auto& row) { return row->done; });
  if (leaving || !joining_.empty()) {
    std::vector<std::unique_ptr<Row>> kept;
    std::vector<CachedRow> layout;
    int64_t reserve = 0;
    for (size_t i = 0; i < rows_.size(); ++i) {
      if (rows_[i]->done) continue;
      layout.push_back({&cache_, static_cast<int64_t>(i), rows_[i]->length});
      reserve = std::max(reserve, rows_[i]->remaining());
    }
    for (auto& row : joining_) {
      layout.push_back({&row->prompt_cache, 0, row->length});
      reserve = std::max(reserve, row->remaining());
    }
    KVCache rebuilt = layout.empty() ? KVCache(0, 0) : rebuild_cache(layout, reserve);
    if (!options_.exact_batching) rebuilt.row_starts.clear();
    for (auto& row : rows_) {
      if (!row->done) kept.push_back(std::move(row));
    }
    for (auto& row : joining_) {
      row->prompt_cache = KVCache(0, 0);
      kept.push_back(std::move(row));
    }
    joining_.clear();
    rows_ = std::move(kept);
    cache_ = std::move(rebuilt);
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.running = static_cast<int64_t>(rows_.size());
    stats_.kv_positions = cache_positions(static_cast<int64_t>(rows_.size()), cache_.capacity);
  }
  if (rows_.empty()) return;

  // One decode step for every row, each with its own adapter.
  const int64_t B = static_cast<int64_t>(rows_.size());
  const auto device = models_.model().options().device();
  std::vector<int64_t> last(B);
  std::vector<int> adapters(B);
  std::vector<std::vector<at::Tensor>> decisions(B);
  for (int64_t b = 0; b < B; ++b) {
    last[b] = rows_[b]->last_token;
    adapters[b] = rows_[b]->request.adapter;
    decisions[b] = rows_[b]->sequence_decisions;
  }
  at::Tensor ids = at::tensor(last, at::kLong).view({B, 1}).to(device);
  models_.set_rows(adapters, decisions);
  at::Tensor hidden = models_.model().hidden_states(ids, at::ones({B, 1}, ids.options()), &cache_);
  at::Tensor logits = models_.model().logits(hidden.select(1, 0));  // [B, V]
  for (int64_t b = 0; b < B; ++b) {
    Row& row = *rows_[b];
    row.length += 1;
    try {
      const int64_t token = choose_next_tokens(logits.narrow(0, b, 1), row.request.sampling, row.generator).item<int64_t>();
      row.done = emit(row, token);
    } catch (const std::exception& e) {
      row.done = true;  // this row's sampling failed: it ends alone
      end_request(*row.state, "abort", std::string("generation failed: ") + without_backtrace(e));
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.decode_steps += 1;
}

}  // namespace remora
