#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

namespace tether::testing {

/// A real TCP server on 127.0.0.1 and a port the kernel picks (port 0), on its own thread, for
/// integration tests. What it does with a connection is its `behaviour`.
class loopback_server {
public:
  enum class behaviour {
    echo,       ///< echoes bytes back until the client closes
    close_soon, ///< reads nothing, closes the connection (FIN) once `close_all()` is called
    reset,      ///< accepts, then closes with SO_LINGER 0 (RST) once `close_all()` is called
  };

  explicit loopback_server(behaviour b) : behaviour_{b}, acceptor_{io_} {
    const asio::ip::tcp::endpoint endpoint{asio::ip::make_address("127.0.0.1"), 0};
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address{true});
    acceptor_.bind(endpoint);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread{[this] { io_.run(); }};
  }

  loopback_server(const loopback_server&) = delete;
  loopback_server& operator=(const loopback_server&) = delete;

  ~loopback_server() {
    io_.stop();
    thread_.join();
  }

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] int accepted() const noexcept { return accepted_.load(); }

  /// Closes every accepted connection (FIN, or RST for behaviour::reset).
  void close_all() {
    std::atomic<bool> done{false};
    asio::post(io_, [this, &done] {
      for (auto& s : sockets_) {
        if (behaviour_ == behaviour::reset) {
          s->set_option(asio::socket_base::linger{true, 0});
        }
        std::error_code ignored;
        s->close(ignored);
      }
      sockets_.clear();
      done = true;
    });
    while (!done.load()) {
      std::this_thread::yield();
    }
  }

private:
  void accept() {
    acceptor_.async_accept([this](std::error_code ec, asio::ip::tcp::socket socket) {
      if (ec) {
        return;
      }
      ++accepted_;
      auto s = std::make_shared<asio::ip::tcp::socket>(std::move(socket));
      if (behaviour_ == behaviour::echo) {
        echo(s, std::make_shared<std::array<char, 4096>>());
      } else {
        sockets_.push_back(s);
      }
      accept();
    });
  }

  static void echo(std::shared_ptr<asio::ip::tcp::socket> s,
                   std::shared_ptr<std::array<char, 4096>> buffer) {
    s->async_read_some(asio::buffer(*buffer), [s, buffer](std::error_code ec, std::size_t n) {
      if (ec) {
        return;
      }
      asio::async_write(*s, asio::buffer(*buffer, n),
                        [s, buffer](std::error_code wec, std::size_t) {
                          if (!wec) {
                            echo(s, buffer);
                          }
                        });
    });
  }

  behaviour behaviour_;
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::atomic<int> accepted_{0};
  std::vector<std::shared_ptr<asio::ip::tcp::socket>> sockets_;
  std::thread thread_;
};

} // namespace tether::testing
