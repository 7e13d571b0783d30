#pragma once
// What the proxy's integration tests share: a shell runner for real clients and an in-process
// proxy on kernel-chosen ports.

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <gtest/gtest.h>

#include "tether/proxy/server.hpp"

namespace tether::testing {

using proxy::load_config;
using proxy::server;

/// Runs a shell command and returns its standard output. The child gets none of this process's
/// other descriptors: a client started while a test server holds a connection must not keep that
/// connection open after the server closes it (popen would pass them on: the test servers' Asio
/// sockets are not close-on-exec; tether's own are, see a_child_process_inherits_none_...).
/// With `inherit`, the child gets every descriptor not marked close-on-exec, as a plain fork
/// and exec would pass them.
inline std::string run(const std::string& command, bool inherit = false) {
  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    return {};
  }
  const pid_t child = ::fork();
  if (child == 0) {
    ::dup2(out_pipe[1], 1);
    if (!inherit) {
      ::close_range(3, ~0U, 0);
    }
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  std::string out;
  char buf[4096];
  ssize_t n = 0;
  while ((n = ::read(out_pipe[0], buf, sizeof buf)) > 0) {
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out_pipe[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  return out;
}

/// Sends raw bytes to 127.0.0.1:`port` and reads until the peer closes, or until 5 s have
/// passed in all (plain sockets: Asio's blocking reads wait on past SO_RCVTIMEO). `closed`, if
/// given, says whether the peer closed.
inline std::string raw_exchange(std::uint16_t port, const std::string& bytes,
                                bool* closed = nullptr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0 ||
      ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) {
    ::close(fd);
    return out;
  }
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds{5};
  while (std::chrono::steady_clock::now() < give_up) {
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        give_up - std::chrono::steady_clock::now());
    if (::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 1))) <= 0) {
      break;
    }
    char buf[4096];
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (closed != nullptr) {
        *closed = true;
      }
      break;
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

/// One client connection kept alive across requests (a plain socket; each answer read whole by
/// its Content-Length, 5 s at most; "" when the connection closed first).
class kept_alive_client {
public:
  explicit kept_alive_client(std::uint16_t port)
      : fd_{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)} {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd_, reinterpret_cast<const sockaddr*>(&to), sizeof to), 0);
  }
  kept_alive_client(const kept_alive_client&) = delete;
  kept_alive_client& operator=(const kept_alive_client&) = delete;
  ~kept_alive_client() { ::close(fd_); }
  std::string get(const std::string& path) {
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: t\r\n\r\n";
    if (::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      return {};
    }
    std::string in;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds{5};
    while (std::chrono::steady_clock::now() < give_up) {
      const auto head_end = in.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        const auto at = in.find("Content-Length: ");
        const auto length = at == std::string::npos ? 0 : std::stoul(in.substr(at + 16));
        if (in.size() >= head_end + 4 + length) {
          return in;
        }
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) {
        continue;
      }
      char buf[4096];
      const auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        return {};
      }
      in.append(buf, static_cast<std::size_t>(n));
    }
    return {};
  }

private:
  int fd_;
};

/// A proxy with one worker, a listener and an admin listener on kernel-chosen ports, and a
/// cluster "backend" of the given endpoints; `/api/` routes to "backend", anything else too
/// unless `api_only`.
class proxy_fixture {
public:
  explicit proxy_fixture(const std::vector<std::uint16_t>& backends, const std::string& extra = "",
                         bool api_only = false, const clock* resilience_clock = nullptr)
      : proxy_fixture{yaml_for(backends, extra, api_only), resilience_clock} {}

  /// A proxy on a whole configuration of the test's.
  proxy_fixture(const std::string& yaml, const clock* resilience_clock) {
    auto loaded = load_config(yaml, "test.yaml");
    EXPECT_TRUE(loaded.value) << (loaded.errors.empty() ? "" : loaded.errors[0]);
    server_ = resilience_clock != nullptr
                  ? std::make_unique<server>(*loaded.value, *resilience_clock)
                  : std::make_unique<server>(*loaded.value);
    const auto ec = server_->start();
    EXPECT_FALSE(ec) << ec.message();
    port_ = server_->listener_ports().at(0);
  }

  /// The fixture's configuration: one worker, kernel-chosen ports, a cluster "backend" of
  /// `backends`, `/api/` (or every path) routed to it, and `extra` YAML appended.
  static std::string yaml_for(const std::vector<std::uint16_t>& backends, const std::string& extra,
                              bool api_only) {
    std::string endpoints;
    for (const auto p : backends) {
      endpoints +=
          (endpoints.empty() ? "" : ", ") + std::string{"\"127.0.0.1:"} + std::to_string(p) + "\"";
    }
    const std::string yaml = "workers: 1\n"
                             "drain_timeout: 5s\n"
                             "listeners: [{name: main, address: 127.0.0.1, port: 0}]\n"
                             "admin: {address: 127.0.0.1, port: 0}\n"
                             "routes:\n  - {path_prefix: " +
                             std::string{api_only ? "/api/" : "/"} +
                             ", cluster: backend}\n"
                             "clusters:\n  - name: backend\n    endpoints: [" +
                             endpoints + "]\n" + extra;
    return yaml;
  }

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::uint16_t admin_port() const { return server_->admin_port(); }
  [[nodiscard]] std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  server& get() { return *server_; }

  /// Sends raw bytes, reads until the proxy closes (5 s bound).
  [[nodiscard]] std::string raw(const std::string& bytes, bool* closed = nullptr) const {
    return raw_exchange(port_, bytes, closed);
  }

private:
  std::unique_ptr<server> server_;
  std::uint16_t port_ = 0;
};

} // namespace tether::testing
