// Parsing and rendering OpenAI API bodies.
#include "serve/openai_api.h"

#include <limits>
#include <random>
#include <sstream>

#include "core/error.h"
#include "core/json_input.h"
#include "serve/api_error.h"
#include "tokenizer/pretrained.h"

namespace remora {
namespace {

constexpr int64_t kMaxChoices = 64;     // prompts x n in one request
constexpr size_t kMaxStopStrings = 16;  // OpenAI allows 4; vLLM any number

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message) { throw ApiError(400, message, param); }

bool present(const json& body, const char* key) { return body.contains(key) && !body.at(key).is_null(); }

int64_t integer(const json& body, const char* key, int64_t low, int64_t high) {
  const json& value = body.at(key);
  if (!value.is_number_integer()) bad(key, std::string(key) + " must be an integer, got " + describe(value));
  // nlohmann keeps non-negative integers unsigned, up to 2^64 - 1.
  const bool in_range = value.is_number_unsigned()
                            ? high >= 0 && value.get<uint64_t>() <= static_cast<uint64_t>(high) &&
                                  static_cast<int64_t>(value.get<uint64_t>()) >= low
                            : value.get<int64_t>() >= low && value.get<int64_t>() <= high;
  if (!in_range) bad(key, std::string(key) + " must be in [" + std::to_string(low) + ", " + std::to_string(high) + "], got " + describe(value));
  return value.get<int64_t>();
}

double number(const json& body, const char* key, double low, double high, bool low_open = false) {
  const json& value = body.at(key);
  if (!value.is_number()) bad(key, std::string(key) + " must be a number, got " + describe(value));
  const double v = value.get<double>();
  if (!(low_open ? v > low : v >= low) || !(v <= high)) {
    std::ostringstream message;
    message << key << " must be in " << (low_open ? "(" : "[") << low << ", " << high << "], got " << describe(value);
    bad(key, message.str());
  }
  return v;
}

// Parameters of the OpenAI API that remora does not implement: a clear 400 rather than silently
// ignoring what the client asked for (their defaults are accepted).
void refuse_unsupported(const json& body, bool chat) {
  auto refuse = [](const std::string& key) { bad(key, key + " is not supported by remora serve"); };
  for (const char* key : {"presence_penalty", "frequency_penalty"}) {
    if (present(body, key) && !(body.at(key).is_number() && body.at(key).get<double>() == 0)) refuse(key);
  }
  if (present(body, "logit_bias") && !(body.at("logit_bias").is_object() && body.at("logit_bias").empty())) refuse("logit_bias");
  if (present(body, "logprobs") && body.at("logprobs") != json(false)) refuse("logprobs");
  if (present(body, "top_logprobs")) refuse("top_logprobs");
  if (!chat) {
    if (present(body, "echo") && body.at("echo") != json(false)) refuse("echo");
    if (present(body, "best_of") && body.at("best_of") != json(1)) refuse("best_of");
    if (present(body, "suffix")) refuse("suffix");
  } else {
    for (const char* key : {"tools", "functions"}) {
      if (present(body, key) && !(body.at(key).is_array() && body.at(key).empty())) refuse(key);
    }
    if (present(body, "response_format") &&
        !(body.at("response_format").is_object() && body.at("response_format").value("type", "") == "text")) {
      refuse("response_format");
    }
  }
}

std::vector<int64_t> token_ids(const json& value, const std::string& param) {
  std::vector<int64_t> ids;
  for (const auto& id : value) {
    if (!id.is_number_integer()) bad(param, param + " must hold token ids (integers), got " + describe(id));
    ids.push_back(id.get<int64_t>());
  }
  return ids;
}

// `prompt`: a string, a list of strings, a list of token ids, or a list of such lists.
std::vector<std::vector<int64_t>> completion_prompts(const json& body, const PretrainedTokenizer& tok) {
  if (!present(body, "prompt")) bad("prompt", "prompt is required");
  const json& prompt = body.at("prompt");
  std::vector<std::vector<int64_t>> prompts;
  if (prompt.is_string()) {
    prompts.push_back(tok.tokenizer.encode(prompt.get<std::string>(), /*add_special_tokens=*/true));
  } else if (prompt.is_array() && !prompt.empty() && prompt.at(0).is_number_integer()) {
    prompts.push_back(token_ids(prompt, "prompt"));
  } else if (prompt.is_array() && !prompt.empty()) {
    for (const auto& item : prompt) {
      if (item.is_string()) {
        prompts.push_back(tok.tokenizer.encode(item.get<std::string>(), true));
      } else if (item.is_array()) {
        prompts.push_back(token_ids(item, "prompt"));
      } else {
        bad("prompt", "prompt items must be strings or token-id lists, got " + describe(item));
      }
      if (static_cast<int64_t>(prompts.size()) > kMaxChoices) bad("prompt", "at most " + std::to_string(kMaxChoices) + " prompts per request");
    }
  } else {
    bad("prompt", "prompt must be a string, a list of strings or token ids, got " + describe(prompt));
  }
  return prompts;
}

// A message's content as the chat template sees it: a string (text parts joined).
std::string message_text(const json& content, size_t index) {
  const std::string param = "messages[" + std::to_string(index) + "].content";
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad(param, param + " must be a string or a list of text parts");
  std::string text;
  for (const auto& part : content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part.at("text").is_string()) {
      bad(param, param + ": only {\"type\": \"text\", \"text\": ...} parts are supported");
    }
    text += part.at("text").get<std::string>();
  }
  return text;
}

std::vector<int64_t> chat_prompt(const json& body, const PretrainedTokenizer& tok) {
  if (!present(body, "messages") || !body.at("messages").is_array() || body.at("messages").empty()) {
    bad("messages", "messages must be a non-empty list");
  }
  if (!tok.chat_template) throw ApiError(400, "the model folder has no chat template; use /v1/completions", "messages");
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  size_t index = 0;
  for (const auto& message : body.at("messages")) {
    const std::string param = "messages[" + std::to_string(index) + "]";
    if (!message.is_object() || !message.contains("role") || !message.at("role").is_string()) {
      bad(param, param + " must be an object with a string role");
    }
    const std::string role = message.at("role").get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "developer") {
      bad(param + ".role", param + ".role must be system, developer, user or assistant, got " + describe(message.at("role")));
    }
    messages.push_back({{"role", role == "developer" ? "system" : role},
                        {"content", message_text(message.value("content", json()), index)}});
    ++index;
  }
  try {
    // The rendered template already holds BOS where the model wants it, as in transformers.
    return tok.tokenizer.encode(tok.apply_chat_template(messages, /*add_generation_prompt=*/true), false);
  } catch (const Error& e) {
    throw ApiError(400, std::string("the chat template failed: ") + e.what(), "messages");
  }
}

std::vector<std::string> stop_strings(const json& body) {
  std::vector<std::string> stops;
  if (!present(body, "stop")) return stops;
  const json& stop = body.at("stop");
  if (stop.is_string()) {
    stops.push_back(stop.get<std::string>());
  } else if (stop.is_array() && stop.size() <= kMaxStopStrings) {
    for (const auto& item : stop) {
      if (!item.is_string()) bad("stop", "stop must hold strings, got " + describe(item));
      stops.push_back(item.get<std::string>());
    }
  } else {
    bad("stop", "stop must be a string or a list of at most " + std::to_string(kMaxStopStrings) + " strings");
  }
  for (const auto& s : stops) {
    if (s.empty()) bad("stop", "stop strings must not be empty");
  }
  return stops;
}

json usage(const std::vector<ChoiceResult>& results, size_t choices_per_prompt) {
  int64_t prompt = 0, completion = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    if (i % choices_per_prompt == 0) prompt += results[i].prompt_tokens;  // each prompt counts once
    completion += results[i].completion_tokens;
  }
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

}  // namespace

int ModelCatalog::resolve(const std::string& name) const {
  if (name == base) return -1;
  for (size_t i = 0; i < adapters.size(); ++i) {
    if (adapters[i] == name) return static_cast<int>(i);
  }
  throw ApiError(404, "The model `" + name + "` does not exist.", "model", "model_not_found");
}

json ModelCatalog::list() const {
  json data = json::array();
  data.push_back({{"id", base}, {"object", "model"}, {"created", created}, {"owned_by", "remora"},
                  {"root", base}, {"parent", nullptr}, {"max_model_len", context}});
  for (const auto& name : adapters) {
    data.push_back({{"id", name}, {"object", "model"}, {"created", created}, {"owned_by", "remora"},
                    {"root", name}, {"parent", base}, {"max_model_len", context}});
  }
  return {{"object", "list"}, {"data", data}};
}

ApiRequest parse_api_request(const std::string& text, bool chat, const ModelCatalog& catalog,
                             const PretrainedTokenizer& tokenizer) {
  json body;
  try {
    body = parse_json(text, "request body");
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  ApiRequest request;
  request.chat = chat;
  if (!present(body, "model") || !body.at("model").is_string()) bad("model", "model must be a string (GET /v1/models lists them)");
  request.model = body.at("model").get<std::string>();
  const int adapter = catalog.resolve(request.model);
  refuse_unsupported(body, chat);

  CompletionRequest common;
  common.adapter = adapter;
  common.sampling.temperature = present(body, "temperature") ? number(body, "temperature", 0, 2) : 1.0;  // OpenAI's default
  // As vLLM: below 1e-5 the distribution is greedy in all but name (and 1/T would overflow).
  if (common.sampling.temperature < 1e-5) common.sampling.temperature = 0;
  if (present(body, "top_p")) common.sampling.top_p = number(body, "top_p", 0, 1, /*low_open=*/true);
  if (present(body, "top_k")) {  // vLLM's extension: -1 (or 0) = all
    const int64_t k = integer(body, "top_k", -1, std::numeric_limits<int32_t>::max());
    common.sampling.top_k = k < 0 ? 0 : k;
  }
  if (present(body, "seed")) {
    common.sampling.seed = static_cast<uint64_t>(integer(body, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
  } else {
    std::random_device device;  // OpenAI's default: a different draw each time
    common.sampling.seed = (uint64_t{device()} << 32) | device();
  }
  common.stop = stop_strings(body);
  const int64_t n = present(body, "n") ? integer(body, "n", 1, kMaxChoices) : 1;
  if (present(body, "stream")) {
    if (!body.at("stream").is_boolean()) bad("stream", "stream must be true or false");
    request.stream = body.at("stream").get<bool>();
  }
  if (present(body, "stream_options")) {
    const json& options = body.at("stream_options");
    if (!options.is_object()) bad("stream_options", "stream_options must be an object");
    if (!request.stream) bad("stream_options", "stream_options needs stream: true");
    if (options.contains("include_usage")) {
      if (!options.at("include_usage").is_boolean()) bad("stream_options.include_usage", "include_usage must be true or false");
      request.include_usage = options.at("include_usage").get<bool>();
    }
  }

  const std::vector<std::vector<int64_t>> prompts =
      chat ? std::vector<std::vector<int64_t>>{chat_prompt(body, tokenizer)} : completion_prompts(body, tokenizer);
  request.n = static_cast<size_t>(n);
  if (static_cast<int64_t>(prompts.size()) * n > kMaxChoices) {
    bad("n", "prompts x n must be at most " + std::to_string(kMaxChoices));
  }
  const char* max_key = chat && present(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  const bool max_given = present(body, max_key);
  const int64_t max_tokens = max_given ? integer(body, max_key, 1, catalog.context) : 0;
  for (const auto& prompt : prompts) {
    if (prompt.empty()) bad("prompt", "a prompt encodes to no tokens");
    const int64_t room = catalog.context - static_cast<int64_t>(prompt.size());
    if (room < 1) {
      throw ApiError(400, "This model's maximum context length is " + std::to_string(catalog.context) + " tokens. However, your prompt has " +
                     std::to_string(prompt.size()) + " tokens.", chat ? "messages" : "prompt", "context_length_exceeded");
    }
    for (int64_t choice = 0; choice < n; ++choice) {
      CompletionRequest one = common;
      one.prompt = prompt;
      one.stream = static_cast<uint64_t>(choice);
      // OpenAI's defaults: 16 tokens for completions, the rest of the context for chat (as vLLM), but
      // never more than the server's KV cache budget could hold.
      const int64_t cache_room = catalog.kv_cache_tokens - static_cast<int64_t>(prompt.size()) + 1;
      one.max_tokens = max_given ? max_tokens : std::max<int64_t>(1, std::min(chat ? room : std::min<int64_t>(16, room), cache_room));
      request.choices.push_back(std::move(one));
    }
  }
  return request;
}

json completion_response(const ApiRequest& request, const std::string& id, int64_t created,
                         const std::vector<ChoiceResult>& results) {
  json choices = json::array();
  for (size_t i = 0; i < results.size(); ++i) {
    json choice = {{"index", i}, {"finish_reason", results[i].finish_reason}, {"logprobs", nullptr}};
    if (request.chat) {
      choice["message"] = {{"role", "assistant"}, {"content", results[i].text}};
    } else {
      choice["text"] = results[i].text;
    }
    choices.push_back(std::move(choice));
  }
  return {{"id", id},
          {"object", request.chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", request.model},
          {"choices", choices},
          {"usage", usage(results, request.n)}};
}

json stream_chunk(const ApiRequest& request, const std::string& id, int64_t created, size_t index,
                  const std::string& text, const std::string& finish_reason, bool role_only) {
  json choice = {{"index", index}, {"logprobs", nullptr},
                 {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  if (request.chat) {
    if (role_only) {
      choice["delta"] = {{"role", "assistant"}, {"content", ""}};
    } else {
      choice["delta"] = text.empty() ? json::object() : json{{"content", text}};
    }
  } else {
    choice["text"] = text;
  }
  return {{"id", id},
          {"object", request.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", request.model},
          {"choices", json::array({choice})}};
}

json usage_chunk(const ApiRequest& request, const std::string& id, int64_t created,
                 const std::vector<ChoiceResult>& results) {
  return {{"id", id},
          {"object", request.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", request.model},
          {"choices", json::array()},
          {"usage", usage(results, request.n)}};
}

json error_body(int status, const std::string& message, const std::string& param, const std::string& code) {
  ApiError error(status, message, param, code);
  return {{"error",
           {{"message", message},
            {"type", error.type()},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

}  // namespace remora
