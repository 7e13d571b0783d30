#pragma once

// A server a test started as a child process: waiting for it to accept connections on loopback,
// and stopping it by its pid.

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

namespace tether::testing {

/// A TCP port free on 127.0.0.1 at the time of the call, for a child to listen on.
inline std::uint16_t free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a{io, {asio::ip::make_address("127.0.0.1"), 0}};
  return a.local_endpoint().port();
}

/// How waiting for a child's listener ended.
enum class listener_wait { listening, exited, timed_out };

/// Connects to 127.0.0.1:`port` every 10 ms until it works, the child `pid` exits (it is reaped
/// then), or 5 s pass.
inline listener_wait wait_for_listener(pid_t pid, std::uint16_t port) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds{5};
  while (std::chrono::steady_clock::now() < give_up) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return listener_wait::exited;
    }
    asio::io_context io;
    asio::ip::tcp::socket s{io};
    std::error_code ec;
    s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
    if (!ec) {
      return listener_wait::listening;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  return listener_wait::timed_out;
}

/// Stops the child `pid` (SIGTERM, then waits for it) if it runs; `pid` is -1 after.
inline void stop_child(pid_t& pid) {
  if (pid > 0) {
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
  }
}

/// Waits for the child `pid` (`name`, for messages) to accept connections on `port`. Throws
/// std::runtime_error, with what `log` returns, when it exited or did not listen within 5 s
/// (then it is stopped); `pid` is -1 after either.
inline void await_listener(pid_t& pid, std::uint16_t port, const std::string& name,
                           const std::function<std::string()>& log) {
  switch (wait_for_listener(pid, port)) {
  case listener_wait::listening:
    return;
  case listener_wait::exited:
    pid = -1;
    throw std::runtime_error(name + " exited at start: " + log());
  case listener_wait::timed_out:
    stop_child(pid);
    throw std::runtime_error(name + " did not accept connections within 5 s: " + log());
  }
}

} // namespace tether::testing
