// Continuous batching: requests join the running batch between decode steps and leave when done.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "eval/sampling.h"
#include "model/kv_cache.h"
#include "serve/adapter_set.h"

namespace remora {

class Tokenizer;

// One sequence to generate (an OpenAI choice).
struct CompletionRequest {
  std::vector<int64_t> prompt;
  int adapter = -1;  // index in the AdapterSet, -1 = the base model
  int64_t max_tokens = 16;
  SamplingOptions sampling;  // temperature, top_p, top_k, seed
  uint64_t stream = 0;       // sampling stream (as `generate`'s row): n choices use 0..n-1
  std::vector<std::string> stop;
};

// What a request has produced; shared by the engine and the connection waiting on it.
class RequestState {
 public:
  struct Update {
    std::string text;  // text that became final since the previous update
    bool finished = false;
  };
  // Waits up to `timeout` for new text or the end, and takes what there is.
  Update wait(std::chrono::milliseconds timeout);
  // Asks the engine to drop the request (its client left); its row is freed before the next step.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  // Set once `finished`: "stop" (eos or a stop string), "length", "abort" (cancelled, shutdown or
  // an error, with `error`).
  std::string finish_reason, error;
  int64_t prompt_tokens = 0, completion_tokens = 0;

 private:
  friend class Engine;
  void append(const std::string& text);
  void finish(const std::string& reason, const std::string& error_message = "");

  std::mutex mutex_;
  std::condition_variable changed_;
  std::string pending_;
  bool finished_ = false;
  std::atomic<bool> cancelled_{false};
};

struct EngineOptions {
  int64_t max_num_seqs = 16;        // rows decoded together
  int64_t kv_cache_tokens = 65536;  // cached positions over all rows (rows x columns of the cache)
  int64_t max_queue = 256;          // waiting requests beyond which submit refuses (429)
  // Attention row by row over each row's own cache columns, so that batching never changes a result
  // (bf16 sums over a padded row round differently); false: one padded attention for the batch.
  bool exact_batching = true;
};

struct EngineStats {
  int64_t running = 0, waiting = 0, kv_positions = 0, kv_budget = 0;
  int64_t requests_finished = 0, prompt_tokens = 0, generated_tokens = 0, decode_steps = 0;
};

class Engine {
 public:
  // `eos` ends a row (the model's eos_token_id); texts are decoded with `tokenizer`.
  Engine(AdapterSet& models, const Tokenizer& tokenizer, std::vector<int64_t> eos, EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Throws ApiError: 400 when it can never fit (context, cache budget) or has a bad
  // parameter, 429 when the queue is full, 503 once shutting down.
  std::shared_ptr<RequestState> submit(CompletionRequest request);
  // Stops accepting, lets queued and running requests finish for up to `drain`, then ends the rest
  // with finish_reason "abort", and stops the decode thread.
  void shutdown(std::chrono::milliseconds drain);
  EngineStats stats() const;
  const EngineOptions& options() const { return options_; }

 private:
  struct Waiting {
    CompletionRequest request;
    std::shared_ptr<RequestState> state;
  };
  struct Row;  // a running request (engine.cpp)

  void loop();
  void step();
  // Whether the batch (running and joining rows) has room for `candidate` (called under mutex_).
  bool fits(const Waiting& candidate) const;
  std::unique_ptr<Row> prefill(Waiting waiting);
  // Records `token` for the row; returns whether the row is done.
  bool emit(Row& row, int64_t token);
  // Every request ends here, exactly once (a draining shutdown counts them).
  void end_request(RequestState& state, const std::string& reason, const std::string& error = "");
  // Ends every admitted request (running or joining) with `message`.
  void fail_all(const std::string& message);

  AdapterSet& models_;
  const Tokenizer& tokenizer_;
  std::vector<int64_t> eos_;
  EngineOptions options_;
  int64_t context_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Waiting> queue_;
  bool accepting_ = true, stopping_ = false;
  int64_t unfinished_ = 0;  // submitted and not yet ended
  EngineStats stats_;

  // Owned by the decode thread.
  std::vector<std::unique_ptr<Row>> rows_;
  std::vector<std::unique_ptr<Row>> joining_;  // prefilled this step, not yet in the batch cache
  KVCache cache_{0, 0};
  std::thread thread_;
};

}  // namespace remora
