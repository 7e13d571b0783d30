#pragma once

// A real nginx (Debian's) for tests and benchmarks: one worker on 127.0.0.1 and a free port, its
// config, logs and temp paths in a private directory, started as a child of this process (in the
// foreground, `daemon off`) and stopped by its pid. The access log records each request's
// connection serial number and its count on that connection, so a test sees keep-alive reuse
// from the server's side.

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "child_server.hpp"

namespace tether::testing {

class nginx_server {
public:
  /// nginx's path, or empty when it is not installed.
  static std::string find_binary() {
    for (const char* p : {"/usr/sbin/nginx", "/usr/bin/nginx"}) {
      if (::access(p, X_OK) == 0) {
        return p;
      }
    }
    return {};
  }

  /// One request as the access log saw it.
  struct logged {
    std::string method;
    std::string uri;
    int status = 0;
    long connection = 0;          ///< nginx's connection serial number
    long connection_requests = 0; ///< the request's number on its connection (1 for the first)
  };

  /// TLS on the listener: a certificate and key, and optionally a CA whose client certificates
  /// are required (mTLS).
  struct tls_settings {
    std::string cert_file;
    std::string key_file;
    std::string client_ca_file{};
  };

  /// One request as the TLS log saw it.
  struct tls_logged {
    long connection = 0;
    std::string server_name; ///< the SNI name, "-" for none
    std::string reused;      ///< "r" when the session was resumed, "." when not
    std::string protocol;    ///< "TLSv1.3"
    std::string client_dn;   ///< the client certificate's subject, "-" for none
  };

  /// Starts nginx. `extra_locations` are added to the server block; with `tls`, the listener
  /// speaks TLS. Throws std::runtime_error saying what failed (nginx's error log is in it).
  explicit nginx_server(const std::string& extra_locations = "",
                        std::optional<tls_settings> tls = std::nullopt) {
    binary_ = find_binary();
    if (binary_.empty()) {
      throw std::runtime_error("nginx is not installed (scripts/setup.sh installs it)");
    }
    char pattern[] = "/tmp/tether-nginx-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    dir_ = pattern;
    // As root, nginx's worker runs as `nobody` and must read the static files.
    ::chmod(dir_.c_str(), 0755);
    std::filesystem::create_directories(dir_ / "www");
    std::ofstream{dir_ / "www" / "small.txt"} << "hello from nginx\n";
    std::ofstream{dir_ / "www" / "large.bin"} << std::string(1024 * 1024, 'x');
    port_ = free_port();
    const auto d = dir_.string();
    std::ofstream conf{dir_ / "nginx.conf"};
    conf << "daemon off;\nworker_processes 1;\npid " << d << "/nginx.pid;\n"
         << "error_log " << d << "/error.log warn;\n"
         << "events { worker_connections 16384; }\n"
         << "http {\n"
         << "  log_format tether '$request_method $uri $status $connection $connection_requests';\n"
         << "  access_log " << d << "/access.log tether;\n"
         << "  log_format tether_tls '$connection $ssl_server_name $ssl_session_reused "
            "$ssl_protocol $ssl_client_s_dn';\n"
         << "  client_body_temp_path " << d << "/body; proxy_temp_path " << d << "/proxy;\n"
         << "  fastcgi_temp_path " << d << "/fastcgi; uwsgi_temp_path " << d << "/uwsgi;\n"
         << "  scgi_temp_path " << d << "/scgi;\n"
         << "  keepalive_timeout 75s; keepalive_requests 1000000;\n"
         << "  default_type application/octet-stream;\n"
         << "  server {\n"
         << "    listen 127.0.0.1:" << port_ << (tls ? " ssl" : "") << " reuseport;\n"
         << tls_directives(tls, d) << "    root " << d << "/www;\n"
         << "    location = /hello { return 200 \"hello\\n\"; }\n"
         << "    location = /fail { return 503 \"failing\\n\"; }\n"
         << "    location = /post { return 200 \"posted\\n\"; }\n"
         << extra_locations << "  }\n}\n";
    conf.close();

    pid_ = ::fork();
    if (pid_ < 0) {
      throw std::runtime_error("fork failed");
    }
    if (pid_ == 0) {
      const std::string conf_path = (dir_ / "nginx.conf").string();
      const std::string err_path = (dir_ / "error.log").string();
      ::execl(binary_.c_str(), "nginx", "-p", d.c_str(), "-c", conf_path.c_str(), "-e",
              err_path.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    await_listener(pid_, port_, "nginx", [this] { return error_log(); });
  }

  nginx_server(const nginx_server&) = delete;
  nginx_server& operator=(const nginx_server&) = delete;

  ~nginx_server() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  /// The access log once it holds `count` requests (nginx writes a line after the response has
  /// gone out, so a client can see the response first), or what it holds after 5 s.
  [[nodiscard]] std::vector<logged> access_log(std::size_t count) const {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds{5};
    auto log = access_log();
    while (log.size() < count && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds{2});
      log = access_log();
    }
    return log;
  }

  /// Every request logged so far.
  [[nodiscard]] std::vector<logged> access_log() const {
    std::vector<logged> out;
    std::ifstream in{dir_ / "access.log"};
    logged l;
    while (in >> l.method >> l.uri >> l.status >> l.connection >> l.connection_requests) {
      out.push_back(l);
    }
    return out;
  }

  /// Every request logged so far in the TLS log (with tls_settings only), waiting up to 5 s for
  /// `count` lines.
  [[nodiscard]] std::vector<tls_logged> tls_log(std::size_t count) const {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds{5};
    std::vector<tls_logged> out;
    for (;;) {
      out.clear();
      std::ifstream in{dir_ / "tls.log"};
      tls_logged l;
      while (in >> l.connection >> l.server_name >> l.reused >> l.protocol >> l.client_dn) {
        out.push_back(l);
      }
      if (out.size() >= count || std::chrono::steady_clock::now() >= give_up) {
        return out;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{2});
    }
  }

  /// Stops nginx (SIGTERM to the master this harness started, then waits for it).
  void stop() { stop_child(pid_); }

private:
  static std::string tls_directives(const std::optional<tls_settings>& tls, const std::string& d) {
    if (!tls) {
      return {};
    }
    std::string out = "    ssl_certificate " + tls->cert_file + ";\n    ssl_certificate_key " +
                      tls->key_file + ";\n    ssl_protocols TLSv1.2 TLSv1.3;\n" +
                      "    ssl_session_cache shared:tether:1m;\n" + "    access_log " + d +
                      "/access.log tether;\n" + "    access_log " + d + "/tls.log tether_tls;\n";
    if (!tls->client_ca_file.empty()) {
      out += "    ssl_client_certificate " + tls->client_ca_file + ";\n    ssl_verify_client on;\n";
    }
    return out;
  }

  std::string error_log() const {
    std::ifstream in{dir_ / "error.log"};
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::string binary_;
  std::filesystem::path dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

} // namespace tether::testing
