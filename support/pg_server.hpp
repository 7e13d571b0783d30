#pragma once

// A real PostgreSQL server for tests and benchmarks: Debian's binaries, a cluster made with
// initdb in a private directory, listening on 127.0.0.1 and a free port, stopped (by its own
// pg_ctl, which signals the postmaster this harness started) and removed when done. As root, the
// server runs as the `postgres` user (PostgreSQL refuses to run as root).

#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "child_server.hpp"

namespace tether::testing {

class pg_server {
public:
  /// The directory of Debian's PostgreSQL binaries (newest version), or nullopt.
  static std::optional<std::filesystem::path> find_binaries() {
    const std::filesystem::path root{"/usr/lib/postgresql"};
    std::optional<std::filesystem::path> best;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator{root, ec}) {
      if (std::filesystem::exists(entry.path() / "bin" / "pg_ctl") &&
          (!best || entry.path().filename().string() > best->parent_path().filename().string())) {
        best = entry.path() / "bin";
      }
    }
    return best;
  }

  /// A certificate and key for the server to offer TLS with (ssl=on).
  struct tls_files {
    std::string cert_file;
    std::string key_file;
  };

  /// Makes and starts a cluster, with TLS when `tls` is given. Throws std::runtime_error saying
  /// what failed.
  explicit pg_server(std::optional<tls_files> tls = std::nullopt) {
    const auto bin = find_binaries();
    if (!bin) {
      throw std::runtime_error("PostgreSQL binaries not found under /usr/lib/postgresql");
    }
    bin_ = *bin;
    char pattern[] = "/tmp/tether-pg-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    dir_ = pattern;
    port_ = free_port();
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("postgres");
      if (pw == nullptr) {
        throw std::runtime_error("running as root and there is no postgres user");
      }
      if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        throw std::runtime_error("chown of " + dir_.string() + " failed");
      }
      as_user_ = "runuser -u postgres -- ";
    }
    run(as_user_ + (bin_ / "initdb").string() + " -D " + (dir_ / "data").string() +
            " -A trust -U postgres --no-sync -E UTF8 > " + (dir_ / "initdb.log").string() + " 2>&1",
        "initdb");
    if (tls) {
      // The server reads its key only when its owner alone may (0600), as the server's user.
      const auto data = dir_ / "data";
      std::filesystem::copy_file(tls->cert_file, data / "server.crt");
      std::filesystem::copy_file(tls->key_file, data / "server.key");
      ::chmod((data / "server.key").c_str(), 0600);
      if (::geteuid() == 0) {
        const passwd* pw = ::getpwnam("postgres");
        for (const char* f : {"server.crt", "server.key"}) {
          if (::chown((data / f).c_str(), pw->pw_uid, pw->pw_gid) != 0) {
            throw std::runtime_error(std::string{"chown of "} + f + " failed");
          }
        }
      }
      ssl_ = " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key";
    }
    start();
  }

  pg_server(const pg_server&) = delete;
  pg_server& operator=(const pg_server&) = delete;

  ~pg_server() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// A libpq connection string for the superuser on the `postgres` database.
  [[nodiscard]] std::string conninfo(const std::string& extra = "") const {
    return "hostaddr=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=postgres " +
           extra;
  }
  [[nodiscard]] const std::filesystem::path& binaries() const noexcept { return bin_; }
  [[nodiscard]] const std::string& as_user() const noexcept { return as_user_; }

  void start() {
    run(pg_ctl() + " -w -t 60 -l " + (dir_ / "server.log").string() + " -o \"-p " +
            std::to_string(port_) + " -k " + dir_.string() +
            " -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=300" +
            ssl_ + "\" start > /dev/null",
        "pg_ctl start");
    running_ = true;
  }

  /// Fast shutdown: sessions are ended, the server exits.
  void stop() noexcept {
    if (running_) {
      (void)std::system((pg_ctl() + " -w -t 60 -m fast stop > /dev/null 2>&1").c_str());
      running_ = false;
    }
  }

  /// A fast restart: every session is cut, the server comes back on the same port.
  void restart() {
    stop();
    start();
  }

private:
  [[nodiscard]] std::string pg_ctl() const {
    return as_user_ + (bin_ / "pg_ctl").string() + " -D " + (dir_ / "data").string();
  }

  static void run(const std::string& command, const char* what) {
    if (std::system(command.c_str()) != 0) {
      throw std::runtime_error(std::string{what} + " failed: " + command);
    }
  }

  std::filesystem::path bin_;
  std::filesystem::path dir_;
  std::string as_user_;
  std::string ssl_; // the server's TLS settings, if any
  std::uint16_t port_ = 0;
  bool running_ = false;
};

} // namespace tether::testing
