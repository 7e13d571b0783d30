#pragma once

// A real forward proxy for tests: Debian's tinyproxy on 127.0.0.1 and a free port, optionally
// asking for Basic credentials, its config and log in a private directory, started in the
// foreground (-d) as a child of this process and stopped by its pid. Its log names every
// request it forwards ("GET http://...") and every tunnel it opens ("CONNECT host:port"), so a
// test sees what went through it.

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "child_server.hpp"

namespace tether::testing {

class tinyproxy_server {
public:
  /// Starts tinyproxy; with `user` set, it answers 407 to requests without those credentials.
  /// Throws std::runtime_error saying what failed.
  explicit tinyproxy_server(const std::string& user = "", const std::string& password = "") {
    const std::string binary = "/usr/bin/tinyproxy";
    if (::access(binary.c_str(), X_OK) != 0) {
      throw std::runtime_error("tinyproxy is not installed (scripts/setup.sh installs it)");
    }
    char pattern[] = "/tmp/tether-tinyproxy-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    dir_ = pattern;
    // As root, tinyproxy runs as nobody and writes its log here.
    ::chmod(dir_.c_str(), 0777);
    port_ = free_port();
    const auto d = dir_.string();
    {
      std::ofstream conf{dir_ / "tinyproxy.conf"};
      if (::geteuid() == 0) {
        conf << "User nobody\nGroup nogroup\n";
      }
      conf << "Port " << port_ << "\nListen 127.0.0.1\nTimeout 30\nLogFile \"" << d
           << "/tinyproxy.log\"\nLogLevel Info\nMaxClients 64\nAllow 127.0.0.1\n"
           << "DisableViaHeader Yes\n";
      if (!user.empty()) {
        conf << "BasicAuth " << user << " " << password << "\n";
      }
    }
    pid_ = ::fork();
    if (pid_ < 0) {
      throw std::runtime_error("fork failed");
    }
    if (pid_ == 0) {
      const std::string conf = (dir_ / "tinyproxy.conf").string();
      ::execl(binary.c_str(), "tinyproxy", "-d", "-c", conf.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    await_listener(pid_, port_, "tinyproxy", [this] { return log(); });
  }

  tinyproxy_server(const tinyproxy_server&) = delete;
  tinyproxy_server& operator=(const tinyproxy_server&) = delete;

  ~tinyproxy_server() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  /// The requests the proxy took, as its log shows them ("GET http://127.0.0.1:8080/hello",
  /// "CONNECT 127.0.0.1:8443"), once there are `count` of them or after 5 s.
  [[nodiscard]] std::vector<std::string> requests(std::size_t count) const {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds{5};
    for (;;) {
      std::vector<std::string> out;
      std::istringstream lines{log()};
      std::string line;
      constexpr std::string_view marker = "): ";
      while (std::getline(lines, line)) {
        // "CONNECT   Dec 02 10:16:08.283 [11525]: Request (file descriptor 5): GET http://h/
        // HTTP/1.1"
        const auto request = line.find("Request (file descriptor");
        const auto at = line.find(marker, request);
        if (request == std::string::npos || at == std::string::npos) {
          continue;
        }
        auto text = line.substr(at + marker.size());
        out.push_back(text.substr(0, text.rfind(" HTTP/")));
      }
      if (out.size() >= count || std::chrono::steady_clock::now() >= give_up) {
        return out;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }
  }

  void stop() { stop_child(pid_); }

private:
  [[nodiscard]] std::string log() const {
    std::ifstream in{dir_ / "tinyproxy.log"};
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::filesystem::path dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

} // namespace tether::testing
