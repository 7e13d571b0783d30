#pragma once

// `openssl s_server` as a TLS peer for tests: started as a child on 127.0.0.1 and a free port
// with the arguments a test gives (a certificate, -Verify, -tls1_2 ...), answering each
// connection with its -www status page, and stopped by its pid.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "child_server.hpp"

namespace tether::testing {

class openssl_server {
public:
  explicit openssl_server(const std::vector<std::string>& args) {
    {
      asio::io_context io;
      asio::ip::tcp::acceptor a{io, {asio::ip::make_address("127.0.0.1"), 0}};
      port_ = a.local_endpoint().port();
    }
    std::vector<std::string> argv{"openssl", "s_server", "-quiet",
                                  "-www",    "-accept",  "127.0.0.1:" + std::to_string(port_)};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = ::fork();
    if (pid_ < 0) {
      throw std::runtime_error("fork failed");
    }
    if (pid_ == 0) {
      std::vector<char*> raw;
      for (auto& a : argv) {
        raw.push_back(a.data());
      }
      raw.push_back(nullptr);
      ::execvp("openssl", raw.data());
      ::_exit(127);
    }
    await_listener(pid_, port_, "openssl s_server", [] { return std::string{"(no log)"}; });
  }
  openssl_server(const openssl_server&) = delete;
  openssl_server& operator=(const openssl_server&) = delete;
  ~openssl_server() { stop(); }

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

  void stop() { stop_child(pid_); }

private:
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

} // namespace tether::testing
