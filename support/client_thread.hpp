#pragma once

// An HTTP client on an io_context thread of its own, for tests that drive it from the test
// thread through its blocking send(); closed and joined when the test is done.

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/use_future.hpp>

#include "tether/http/client.hpp"

namespace tether::testing {

class client_thread {
public:
  explicit client_thread(const http::client_options& options, metrics::registry* registry = nullptr)
      : work_{io_.get_executor()},
        client_{http::client::create(io_.get_executor(), options, registry)}, thread_{[this] {
          io_.run();
        }} {}

  client_thread(const client_thread&) = delete;
  client_thread& operator=(const client_thread&) = delete;

  ~client_thread() {
    asio::co_spawn(io_, client_->async_close(), asio::use_future)
        .wait_for(std::chrono::seconds{10});
    work_.reset();
    io_.stop();
    thread_.join();
  }

  http::client* operator->() { return client_.get(); }

  http::client_result get(const std::string& url) {
    return client_->send(http::request::to("GET", url));
  }

  /// Stats of a host, read on the client's thread.
  http::client::host_stats stats(const std::string& host, std::uint16_t port, bool tls = false) {
    std::promise<http::client::host_stats> p;
    asio::post(io_, [&] {
      p.set_value(client_->stats(host, port, tls).value_or(http::client::host_stats{}));
    });
    return p.get_future().get();
  }

private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::shared_ptr<http::client> client_;
  std::thread thread_;
};

} // namespace tether::testing
