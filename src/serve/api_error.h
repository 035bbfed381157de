// An error a request ends with, carrying its HTTP status and OpenAI error type.
#pragma once

#include <stdexcept>
#include <string>

namespace remora {

// Rendered as OpenAI's {"error": {"message", "type", "param", "code"}} with `status`.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "", std::string code = "")
      : std::runtime_error(message), status(status), param(std::move(param)), code(std::move(code)) {}
  // OpenAI's error types by status.
  std::string type() const {
    switch (status) {
      case 401: return "authentication_error";
      case 404: return "not_found_error";
      case 429: return "rate_limit_error";
      case 503: return "service_unavailable";
      default: return status >= 500 ? "internal_server_error" : "invalid_request_error";
    }
  }
  int status;
  std::string param, code;
};

}  // namespace remora
