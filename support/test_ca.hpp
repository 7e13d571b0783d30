#pragma once

// The certificates of tether's TLS tests, made by support/make_test_ca.sh with the openssl CLI
// into a private directory (removed at exit), once per test binary. See the script for the set.

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace tether::testing {

class test_ca {
public:
  /// The binary's one CA (made on first use).
  static const test_ca& get() {
    static const test_ca ca;
    return ca;
  }

  /// A file of the set ("ca.pem", "server.key", ...).
  [[nodiscard]] std::string path(std::string_view file) const { return (dir_ / file).string(); }

  test_ca(const test_ca&) = delete;
  test_ca& operator=(const test_ca&) = delete;
  ~test_ca() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

private:
  test_ca() {
    char pattern[] = "/tmp/tether-ca-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    dir_ = pattern;
    const std::string command = std::string{"sh "} + TETHER_MAKE_TEST_CA + " " + dir_.string();
    const int status = std::system(command.c_str());
    if (status != 0) {
      throw std::runtime_error("make_test_ca.sh failed (" + std::to_string(status) + ")");
    }
  }

  std::filesystem::path dir_;
};

} // namespace tether::testing
