#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "tether/http/parser.hpp"

namespace tether::testing {

/// A real HTTP/1.1 server on 127.0.0.1 and a kernel-chosen port, on its own thread, that fails on
/// demand: the tests of the HTTP client (and later of the proxy) use it as the upstream that
/// misbehaves. It parses requests with tether's own parser and answers:
///   /echo      200 with the request's body
///   /chunked   200 with a chunked body of three pieces ("a", "bb", "ccc")
///   /close     200 with Connection: close, then closes
///   /garbage   a response with two different Content-Lengths (a malformed, smuggling-prone one)
///   /headers   200 with the request's header fields, one "name: value" line each
///   /slow      200 after 300 ms
///   /double    two responses to one request (a server out of step with its requests)
///   /early-hints  103 Early Hints with a Link field, then 200 "ok"
///   /switch    101 Switching Protocols, asked for or not, then nothing
///   /reject-early  401 as soon as the head is read; the body is never read
///   /space-before-colon, /folded, /nul   a response with that defect in a field
///   /http10-chunked   HTTP/1.0 with Transfer-Encoding: chunked and Connection: keep-alive
///   /http10    HTTP/1.0 200 with a Content-Length, then closes
///   /truncated 200 with Content-Length: 10 and 4 bytes of body, then closes
///   /hop-by-hop  200 with Connection: X-Internal, X-Internal and Keep-Alive fields
/// A request with Expect: 100-continue gets its 100 once the head is read.
///   /no-content          204 with Transfer-Encoding: chunked (which a 204 must not have)
///   /no-content-length   204 with Content-Length: 0 (which a 204 must not have either)
///   /not-modified        304 with Transfer-Encoding: chunked and an ETag
///   anything   200 "ok"
/// unless a fault is set, which takes over the next requests:
///   status     answers `status` (with Retry-After when set), keeps the connection
///   stall      reads the request and never answers
///   close      closes the connection without answering (FIN)
///   reset      resets the connection without answering (RST)
///   drop_reused  closes without answering any request after a connection's first, as a server
///                does when its keep-alive timeout fires just as a request arrives
class http_test_server {
public:
  enum class fault { none, status, stall, close, reset, drop_reused };

  http_test_server() : acceptor_{io_} {
    const asio::ip::tcp::endpoint endpoint{asio::ip::make_address("127.0.0.1"), 0};
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address{true});
    acceptor_.bind(endpoint);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, accept_loop(this), asio::detached);
    thread_ = std::thread{[this] { io_.run(); }};
  }

  http_test_server(const http_test_server&) = delete;
  http_test_server& operator=(const http_test_server&) = delete;

  ~http_test_server() {
    io_.stop();
    thread_.join();
  }

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// Requests whose head was read, answered or not.
  [[nodiscard]] int requests() const noexcept { return requests_.load(); }
  /// Connections accepted.
  [[nodiscard]] int connections() const noexcept { return connections_.load(); }
  /// Requests with this method.
  /// Requests for this target.
  [[nodiscard]] int requests_to(const std::string& target) const {
    const std::lock_guard lock{mutex_};
    return static_cast<int>(std::count(targets_.begin(), targets_.end(), target));
  }
  [[nodiscard]] int requests_with(const std::string& method) const {
    const std::lock_guard lock{mutex_};
    int n = 0;
    for (const auto& m : methods_) {
      n += m == method ? 1 : 0;
    }
    return n;
  }

  /// The next `count` requests get `f` (status: answered with `status`); -1: every request until
  /// heal().
  void set_fault(fault f, int count = -1, int status = 503, std::string retry_after = {}) {
    const std::lock_guard lock{mutex_};
    fault_ = f;
    fault_left_ = count;
    status_ = status;
    retry_after_ = std::move(retry_after);
  }
  void heal() { set_fault(fault::none, 0); }

private:
  struct incoming {
    std::string method;
    std::string target;
    std::string headers; // "name: value\n" each
    std::string body;
  };

  class collector final : public http::parser_handler {
  public:
    void on_head(const http::message_head& head) override {
      // Said at the head, before any of the body: a 100 Continue owed, or an early answer.
      const auto* expect = head.find("expect");
      continue_owed = expect != nullptr && expect->value == "100-continue";
      reject_early = head.target == "/reject-early";
      current_.method = head.method;
      current_.target = head.target;
      current_.headers.clear();
      for (const auto& h : head.headers) {
        current_.headers.append(h.name).append(": ").append(h.value).append("\n");
      }
      current_.body.clear();
    }
    void on_body(std::string_view piece) override { current_.body.append(piece); }
    void on_message_complete() override { done.push_back(std::move(current_)); }
    std::vector<incoming> done;
    bool continue_owed = false;
    bool reject_early = false;

  private:
    incoming current_;
  };

  static asio::awaitable<void> accept_loop(http_test_server* self) {
    for (;;) {
      auto [ec, socket] =
          co_await self->acceptor_.async_accept(asio::experimental::as_tuple(asio::use_awaitable));
      if (ec) {
        co_return;
      }
      ++self->connections_;
      asio::co_spawn(self->io_, serve(self, std::move(socket)), asio::detached);
    }
  }

  // Takes the fault for one request: what to do with it, under the lock.
  fault take_fault(bool reused, int& status, std::string& retry_after) {
    const std::lock_guard lock{mutex_};
    status = status_;
    retry_after = retry_after_;
    if (fault_ == fault::none || fault_left_ == 0) {
      return fault::none;
    }
    if (fault_ == fault::drop_reused && !reused) {
      return fault::none;
    }
    if (fault_left_ > 0) {
      --fault_left_;
    }
    return fault_;
  }

  static asio::awaitable<void> serve(http_test_server* self, asio::ip::tcp::socket socket) {
    constexpr auto tuple = asio::experimental::as_tuple(asio::use_awaitable);
    http::parser parser{http::parser::kind::request};
    collector requests;
    std::array<char, 16 * 1024> buffer{};
    int served = 0;
    for (;;) {
      auto [ec, n] = co_await socket.async_read_some(asio::buffer(buffer), tuple);
      if (ec) {
        co_return;
      }
      parser.feed({buffer.data(), n}, requests);
      if (parser.error()) {
        const std::string reply =
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(reply), tuple);
        co_return;
      }
      if (requests.reject_early) {
        // Answers before the body and never reads it, as a server refusing an upload does.
        ++self->requests_;
        const std::string reply = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(reply), tuple);
        asio::steady_timer forever{socket.get_executor(), std::chrono::hours{1}};
        co_await forever.async_wait(tuple);
        co_return;
      }
      if (std::exchange(requests.continue_owed, false)) {
        const std::string go_on = "HTTP/1.1 100 Continue\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(go_on), tuple);
      }
      auto done = std::move(requests.done);
      requests.done.clear();
      for (auto& req : done) {
        ++self->requests_;
        {
          const std::lock_guard lock{self->mutex_};
          self->methods_.push_back(req.method);
          self->targets_.push_back(req.target);
        }
        int status = 0;
        std::string retry_after;
        const fault f = self->take_fault(served > 0, status, retry_after);
        ++served;
        std::string reply;
        bool close_after = false;
        switch (f) {
        case fault::stall: {
          asio::steady_timer forever{socket.get_executor(), std::chrono::hours{1}};
          co_await forever.async_wait(tuple);
          co_return;
        }
        case fault::close:
        case fault::drop_reused: {
          std::error_code ignored;
          socket.shutdown(asio::socket_base::shutdown_both, ignored);
          socket.close(ignored);
          co_return;
        }
        case fault::reset: {
          std::error_code ignored;
          socket.set_option(asio::socket_base::linger{true, 0}, ignored);
          socket.close(ignored);
          co_return;
        }
        case fault::status:
          reply = "HTTP/1.1 " + std::to_string(status) + " Failing On Purpose\r\n";
          if (!retry_after.empty()) {
            reply += "Retry-After: " + retry_after + "\r\n";
          }
          reply += "Content-Length: 7\r\n\r\nfailing";
          break;
        case fault::none:
          if (req.target == "/echo") {
            reply = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(req.body.size()) +
                    "\r\n\r\n" + req.body;
          } else if (req.target == "/chunked") {
            reply = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "1\r\na\r\n2\r\nbb\r\n3\r\nccc\r\n0\r\n\r\n";
          } else if (req.target == "/double") {
            reply = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
                    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo";
          } else if (req.target == "/early-hints") {
            reply = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
          } else if (req.target == "/switch") {
            const std::string switched = "HTTP/1.1 101 Switching Protocols\r\n"
                                         "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
            co_await asio::async_write(socket, asio::buffer(switched), tuple);
            asio::steady_timer forever{socket.get_executor(), std::chrono::hours{1}};
            co_await forever.async_wait(tuple);
            co_return;
          } else if (req.target == "/space-before-colon") {
            reply = "HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 2\r\n\r\nok";
          } else if (req.target == "/folded") {
            reply = "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\nok";
          } else if (req.target == "/nul") {
            reply = std::string{"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok", 50};
          } else if (req.target == "/http10-chunked") {
            reply =
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
                "2\r\nok\r\n0\r\n\r\n";
          } else if (req.target == "/http10") {
            reply = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
            close_after = true;
          } else if (req.target == "/truncated") {
            reply = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf";
            close_after = true;
          } else if (req.target == "/hop-by-hop") {
            reply = "HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: secret\r\n"
                    "Keep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok";
          } else if (req.target == "/no-content") {
            reply = "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n";
          } else if (req.target == "/no-content-length") {
            reply = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
          } else if (req.target == "/not-modified") {
            reply = "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n";
          } else if (req.target == "/slow") {
            asio::steady_timer wait{socket.get_executor(), std::chrono::milliseconds{300}};
            co_await wait.async_wait(tuple);
            reply = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow";
          } else if (req.target == "/headers") {
            reply = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(req.headers.size()) +
                    "\r\n\r\n" + req.headers;
          } else if (req.target == "/garbage") {
            reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok";
          } else if (req.target == "/close") {
            reply = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
            close_after = true;
          } else {
            reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
          }
          break;
        }
        auto [write_error, written] =
            co_await asio::async_write(socket, asio::buffer(reply), tuple);
        if (write_error || close_after) {
          co_return;
        }
      }
    }
  }

  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<int> requests_{0};
  std::atomic<int> connections_{0};
  mutable std::mutex mutex_;
  std::vector<std::string> methods_;
  std::vector<std::string> targets_;
  fault fault_ = fault::none;
  int fault_left_ = 0;
  int status_ = 503;
  std::string retry_after_;
};

} // namespace tether::testing
