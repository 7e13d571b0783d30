#pragma once
// The HTTP client for code without an io_context or coroutines.

#include <memory>
#include <thread>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include "tether/http/client.hpp"

namespace tether::http {

/// An http::client that runs its own I/O thread: send() blocks the calling thread until the
/// request ends, with the same pools, retries, budget and breaker as the coroutine client.
/// Any number of threads may call send() at once (each waits for its own request).
///
///   tether::http::blocking_client http;
///   auto r = http.send(tether::http::request::to("GET", "https://api.example.com/items"));
///   if (r.error) { log(r.message); }
///
/// The destructor closes the pools (leases come home within the pool's drain timeout) and joins
/// the thread. Code that has an io_context already uses http::client on it instead: a second
/// thread per client is what this class costs.
class blocking_client {
public:
  explicit blocking_client(client_options options = {}, metrics::registry* registry = nullptr);
  blocking_client(const blocking_client&) = delete;
  blocking_client& operator=(const blocking_client&) = delete;
  ~blocking_client();

  /// Sends `r` and waits for how it ended.
  client_result send(request r);

  /// The client underneath, for its stats and handshakes (read them through its executor).
  [[nodiscard]] client& coroutine_client() noexcept { return *client_; }

private:
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::shared_ptr<client> client_;
  std::thread thread_;
};

} // namespace tether::http
