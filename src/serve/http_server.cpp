// Routes, authentication, error bodies and server-sent events over cpp-httplib.
#include "serve/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <iostream>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "serve/api_error.h"

namespace remora {
namespace {

using json = nlohmann::json;

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Bodies may quote what a client sent (a URL-decoded path, a JSON parse error): invalid UTF-8 is
// replaced, never thrown on (an exception in httplib's error handler would end the process).
std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_error(httplib::Response& res, const ApiError& error) {
  res.status = error.status;
  res.set_content(dump(error_body(error.status, error.what(), error.param, error.code)), "application/json");
}

// Results so far of each choice of a request; each choice's state is polled in turn.
struct Collected {
  std::vector<std::shared_ptr<RequestState>> states;
  std::vector<ChoiceResult> results;
  std::vector<bool> finished;

  bool all_finished() const { return std::find(finished.begin(), finished.end(), false) == finished.end(); }
  void cancel() {
    for (auto& state : states) state->cancel();
  }
  // Waits for news of unfinished choice i; returns its new text. Sets finished[i] at its end.
  std::string poll(size_t i, std::chrono::milliseconds timeout) {
    RequestState::Update update = states[i]->wait(timeout);
    results[i].text += update.text;
    if (update.finished) {
      finished[i] = true;
      results[i].finish_reason = states[i]->finish_reason;
      results[i].prompt_tokens = states[i]->prompt_tokens;
      results[i].completion_tokens = states[i]->completion_tokens;
    }
    return update.text;
  }
  // The first error a choice ended with ("" if none).
  std::string error() const {
    for (size_t i = 0; i < states.size(); ++i) {
      if (finished[i] && !states[i]->error.empty()) return states[i]->error;
    }
    return "";
  }
};

}  // namespace

ApiServer::ApiServer(Engine& engine, const ModelCatalog& catalog, const PretrainedTokenizer& tokenizer, ServerOptions options)
    : engine_(engine), catalog_(catalog), tokenizer_(tokenizer), options_(std::move(options)),
      server_(std::make_unique<httplib::Server>()) {
  const int threads = options_.http_threads;
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_payload_max_length(options_.max_body_bytes);
  server_->set_tcp_nodelay(true);
  // httplib closes a connection after 5 requests by default; clients keep theirs open far longer.
  server_->set_keep_alive_max_count(1000);
  // httplib's default adds SO_REUSEPORT, which lets a second server share a port already in use
  // (and take some of its connections); SO_REUSEADDR alone still allows a quick restart.
  server_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  add_routes();
}

ApiServer::~ApiServer() = default;

void ApiServer::bind() {
  const bool bound = options_.port == 0 ? (port_ = server_->bind_to_any_port(options_.host)) > 0
                                        : server_->bind_to_port(options_.host, port_ = options_.port);
  if (!bound) {
    fail("serve: cannot listen on ", options_.host, ":", options_.port, " (address in use, or not an address of this machine)");
  }
}

void ApiServer::run() {
  server_->listen_after_bind();
  run_returned_ = true;
}

void ApiServer::drain_and_stop(std::chrono::milliseconds timeout) {
  // Requests already taken finish; new ones get 503 while the rest drain.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  engine_.shutdown(timeout);  // waits for the batch to empty (or the timeout), then aborts the rest
  // Connections still writing their last chunks get the rest of the time to do so.
  while (in_flight_ > 0 && std::chrono::steady_clock::now() < deadline + std::chrono::seconds(2)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // A signal that came before the listener started must still stop it (stop() does nothing before).
  while (!run_returned_ && !server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  server_->stop();
}

void ApiServer::add_routes() {
  server_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (options_.api_key.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") == "Bearer " + options_.api_key) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "Incorrect API key provided (send Authorization: Bearer KEY)", "", "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // Statuses httplib sets itself (unknown route, body too large, unreadable request) get JSON bodies too.
  server_->set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = "HTTP " + std::to_string(res.status);
    if (res.status == 404) message = "no route " + req.method + " " + req.path;
    if (res.status == 413) message = "the request body is larger than the server's limit of " + std::to_string(options_.max_body_bytes) + " bytes";
    if (res.status == 405) message = req.method + " is not allowed on " + req.path;
    res.set_content(dump(error_body(res.status, message)), "application/json");
  });
  server_->set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr error) {
    std::string message = "internal error";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, message));
  });

  // One access-log line per request on stderr (streams are logged when their headers go out).
  server_->set_logger([](const httplib::Request& req, const httplib::Response& res) {
    std::ostringstream line;
    line << "remora serve: " << req.remote_addr << " " << req.method << " " << req.path << " " << res.status << "\n";
    std::cerr << line.str() << std::flush;
  });
  server_->Get("/health", [](const httplib::Request&, httplib::Response& res) { res.status = 200; });
  server_->Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(dump(catalog_.list()), "application/json");
  });
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    const EngineStats s = engine_.stats();
    std::ostringstream out;
    auto metric = [&](const char* name, const char* type, const char* help, int64_t value) {
      out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n" << name << " " << value << "\n";
    };
    metric("remora_requests_running", "gauge", "Sequences in the running batch.", s.running);
    metric("remora_requests_waiting", "gauge", "Sequences waiting for room in the batch.", s.waiting);
    metric("remora_kv_cache_positions", "gauge", "KV cache positions allocated (rows x columns).", s.kv_positions);
    metric("remora_kv_cache_positions_limit", "gauge", "The --kv-cache-tokens budget.", s.kv_budget);
    metric("remora_requests_finished_total", "counter", "Sequences finished.", s.requests_finished);
    metric("remora_prompt_tokens_total", "counter", "Prompt tokens of finished sequences.", s.prompt_tokens);
    metric("remora_generation_tokens_total", "counter", "Tokens generated.", s.generated_tokens);
    metric("remora_decode_steps_total", "counter", "Batched decode steps run.", s.decode_steps);
    res.set_content(out.str(), "text/plain; version=0.0.4");
  });
  for (const bool chat : {false, true}) {
    server_->Post(chat ? "/v1/chat/completions" : "/v1/completions", [this, chat](const httplib::Request& req, httplib::Response& res) {
      // Counts the request until its answer is written (the stream's callbacks hold it till then).
      ++in_flight_;
      auto in_flight = std::shared_ptr<void>(nullptr, [this](void*) { --in_flight_; });
      try {
        const ApiRequest request = parse_api_request(req.body, chat, catalog_, tokenizer_);
        auto collected = std::make_shared<Collected>();
        for (const auto& choice : request.choices) {
          try {
            collected->states.push_back(engine_.submit(choice));
          } catch (...) {
            collected->cancel();  // a request is taken whole or not at all
            throw;
          }
        }
        collected->results.resize(collected->states.size());
        collected->finished.assign(collected->states.size(), false);
        const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(unix_time()) + "-" + std::to_string(next_id_++);
        const int64_t created = unix_time();
        if (!request.stream) {
          while (!collected->all_finished()) {
            for (size_t i = 0; i < collected->states.size(); ++i) {
              if (!collected->finished[i]) collected->poll(i, std::chrono::milliseconds(100));
            }
          }
          const std::string error = collected->error();
          if (!error.empty()) throw ApiError(error.find("shut down") != std::string::npos ? 503 : 500, error);
          res.set_content(dump(completion_response(request, id, created, collected->results)), "application/json");
          return;
        }
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider(
            "text/event-stream",
            // The whole stream is written in one call: httplib stops calling a provider once the
            // server is stopping, and a drained stream must still end with [DONE].
            [request, collected, id, created, in_flight](size_t, httplib::DataSink& sink) {
              auto send = [&](const json& event) {
                const std::string line = "data: " + dump(event) + "\n\n";
                return sink.write(line.data(), line.size());
              };
              bool open = true;
              if (request.chat) {
                for (size_t i = 0; i < collected->states.size() && open; ++i) open = send(stream_chunk(request, id, created, i, "", "", true));
              }
              const auto wait = std::chrono::milliseconds(collected->states.size() == 1 ? 200 : 5);
              auto last_write = std::chrono::steady_clock::now();
              while (open && !collected->all_finished()) {
                for (size_t i = 0; i < collected->states.size() && open; ++i) {
                  if (collected->finished[i]) continue;
                  const std::string text = collected->poll(i, wait);
                  const std::string reason = collected->finished[i] ? collected->results[i].finish_reason : "";
                  if (collected->finished[i] && !collected->states[i]->error.empty()) {
                    open = send(error_body(500, collected->states[i]->error));
                  } else if (!text.empty() || !reason.empty()) {
                    open = send(stream_chunk(request, id, created, i, text, reason));
                  } else {
                    continue;
                  }
                  last_write = std::chrono::steady_clock::now();
                }
                // A comment line now and then finds out whether a waiting client is still there.
                if (open && std::chrono::steady_clock::now() - last_write > std::chrono::seconds(1)) {
                  open = sink.write(": keep-alive\n\n", 14);
                  last_write = std::chrono::steady_clock::now();
                }
              }
              if (!open) {
                collected->cancel();  // the client left: free its rows
                return false;
              }
              if (request.include_usage) open = send(usage_chunk(request, id, created, collected->results));
              static const std::string done = "data: [DONE]\n\n";
              if (open) open = sink.write(done.data(), done.size());
              sink.done();
              return open;
            },
            [collected](bool) { collected->cancel(); });  // a no-op for finished choices
      } catch (const ApiError& error) {
        send_error(res, error);
      } catch (const Error& error) {
        send_error(res, ApiError(400, error.what()));
      }
    });
  }
}

}  // namespace remora
