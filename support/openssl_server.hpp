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
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds{5};
    while (std::chrono::steady_clock::now() < give_up) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("openssl s_server exited at start");
      }
      asio::io_context io;
      asio::ip::tcp::socket s{io};
      std::error_code ec;
      s.connect({asio::ip::make_address("127.0.0.1"), port_}, ec);
      if (!ec) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    stop();
    throw std::runtime_error("openssl s_server did not listen within 5 s");
  }
  openssl_server(const openssl_server&) = delete;
  openssl_server& operator=(const openssl_server&) = delete;
  ~openssl_server() { stop(); }

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

private:
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

} // namespace tether::testing
