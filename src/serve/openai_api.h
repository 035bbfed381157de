// The OpenAI completions and chat-completions API as vLLM exposes it: request parsing and validation,
// response and stream-chunk bodies.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "serve/engine.h"

namespace remora {

struct PretrainedTokenizer;

// The names the server answers to: the base model and each adapter (vLLM's LoRA-module convention:
// a request's `model` picks one).
struct ModelCatalog {
  std::string base;
  std::vector<std::string> adapters;  // index = AdapterSet index
  int64_t created = 0;                // Unix time the server started
  int64_t context = 0;                // max_position_embeddings
  int64_t kv_cache_tokens = 0;        // the engine's budget: caps the default max_tokens

  // -1 for the base; throws ApiError 404 for an unknown name.
  int resolve(const std::string& name) const;
  // GET /v1/models
  nlohmann::json list() const;
};

// A validated request: one CompletionRequest per (prompt, choice), in OpenAI's choice order.
struct ApiRequest {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::string model;
  size_t n = 1;  // choices per prompt
  std::vector<CompletionRequest> choices;
};

// Parses a /v1/completions (`chat` false) or /v1/chat/completions body. Throws ApiError (400, or
// 404 for an unknown model) naming the offending parameter.
ApiRequest parse_api_request(const std::string& body, bool chat, const ModelCatalog& catalog,
                             const PretrainedTokenizer& tokenizer);

// The outcome of one choice, for the response body.
struct ChoiceResult {
  std::string text, finish_reason;
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

// The whole (non-streamed) response.
nlohmann::json completion_response(const ApiRequest& request, const std::string& id, int64_t created,
                                   const std::vector<ChoiceResult>& results);
// One server-sent-event chunk for choice `index`: new `text`, and `finish_reason` once it ended
// ("" before). Chat streams open each choice with a role-only delta (`role_only`).
nlohmann::json stream_chunk(const ApiRequest& request, const std::string& id, int64_t created, size_t index,
                            const std::string& text, const std::string& finish_reason, bool role_only = false);
// The final usage-only chunk (stream_options.include_usage).
nlohmann::json usage_chunk(const ApiRequest& request, const std::string& id, int64_t created,
                           const std::vector<ChoiceResult>& results);
// {"error": {...}} as OpenAI renders errors.
nlohmann::json error_body(int status, const std::string& message, const std::string& param = "",
                          const std::string& code = "");

}  // namespace remora
