// The HTTP front of `remora serve` (cpp-httplib): OpenAI routes, API key, limits, streaming, draining.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "serve/engine.h"
#include "serve/openai_api.h"

namespace httplib {
class Server;
}

namespace remora {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;                      // empty: no authentication
  size_t max_body_bytes = size_t{4} << 20;  // larger request bodies get 413
  int http_threads = 64;                    // connections served at once; more wait for a thread
};

class ApiServer {
 public:
  ApiServer(Engine& engine, const ModelCatalog& catalog, const PretrainedTokenizer& tokenizer, ServerOptions options);
  ~ApiServer();

  // Binds the listening socket; throws Error naming the address when it cannot (port in use, bad host).
  void bind();
  int port() const { return port_; }  // the bound port (--port 0 picks a free one)
  // Serves until drain_and_stop(); returns when every connection is closed.
  void run();
  // Graceful end: new requests get 503, requests in flight get up to `timeout` to finish (then they
  // are ended with finish_reason "abort"), and the listener closes.
  void drain_and_stop(std::chrono::milliseconds timeout);

 private:
  void add_routes();
  void complete(const std::string& body, bool chat, std::string& response_body, int& status);

  Engine& engine_;
  const ModelCatalog& catalog_;
  const PretrainedTokenizer& tokenizer_;
  ServerOptions options_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::atomic<int64_t> in_flight_{0};  // completion requests not yet answered in full
  std::atomic<uint64_t> next_id_{0};
  std::atomic<bool> run_returned_{false};
};

}  // namespace remora
