#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <asio/io_context.hpp>

#include "tether/http/client.hpp"
#include "tether/http/parser.hpp"
#include "tether/http/serializer.hpp"

namespace tether::http {

using namespace std::chrono_literals;

/// A request as a small server's handler sees it: head and body read whole.
struct server_request {
  std::string method;
  std::string target; ///< as sent: path and query
  std::vector<field> headers;
  std::string body;

  /// The path without the query.
  [[nodiscard]] std::string_view path() const noexcept {
    return std::string_view{target}.substr(0, target.find('?'));
  }
  /// The value of the first header named `name` (case-insensitive), or nullptr.
  [[nodiscard]] const std::string* find(std::string_view name) const noexcept;
};

/// What a handler answers. Content-Length and Connection are the server's to write.
struct server_response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<field> headers{};
};

/// Settings of a small_server.
struct server_options {
  parser_limits limits = default_limits();
  std::chrono::milliseconds idle_timeout = 60s;    ///< a kept-alive connection with no request
  std::chrono::milliseconds request_timeout = 10s; ///< from a request's first byte to its end

  [[nodiscard]] static parser_limits default_limits() {
    parser_limits l;
    l.max_body = 1024 * 1024;
    return l;
  }
};

/// A small HTTP/1.1 server for control planes: admin listeners, the chaos REST API, metrics.
/// Requests are read whole (bodies up to limits.max_body) and answered by a synchronous handler
/// on the server's executor, in order, with keep-alive. Malformed requests get the parser's
/// status (400, 413, 414, 431, 501) with the reason in the body, and the connection is closed.
/// Not for the data path: the proxy's workers stream instead.
class small_server : public std::enable_shared_from_this<small_server> {
  struct private_tag {};

public:
  using handler = std::function<server_response(const server_request&)>;

  static std::shared_ptr<small_server> create(asio::io_context::executor_type executor, handler h,
                                              server_options options = {});
  small_server(private_tag, asio::io_context::executor_type executor, handler h,
               server_options options);
  small_server(const small_server&) = delete;
  small_server& operator=(const small_server&) = delete;
  ~small_server();

  /// Binds and listens on `address`:`port` (0: the kernel picks; port() tells) and starts
  /// accepting. The error says why when the address cannot be bound.
  std::error_code listen(const std::string& address, std::uint16_t port);
  /// Serves on `fd`, a TCP socket listening already (one taken over from another process);
  /// owned from now on, closed on error.
  std::error_code listen_on(int fd);

  /// The listening socket (for passing it to another process; still owned here).
  [[nodiscard]] int native_handle() noexcept;
  /// Stops accepting; connections open go on being served. Call on the server's executor.
  void stop_accepting();

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

  /// Stops accepting and closes every connection. Call on the server's executor.
  void stop();

  struct state;

private:
  std::error_code accept(); // the accept loop on the listening acceptor

  asio::io_context::executor_type executor_;
  std::shared_ptr<state> s_;
  std::uint16_t port_ = 0;
};

} // namespace tether::http
