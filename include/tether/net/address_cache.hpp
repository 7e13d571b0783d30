#pragma once

#include <mutex>
#include <vector>

#include <asio/ip/tcp.hpp>

namespace tether::net {

/// The addresses a host name resolved to, as last resolved: shared by the connectors of one
/// upstream (a proxy's workers each have one) and refreshed by its owner on a schedule (the
/// proxy's resolve_interval), so that new connections follow DNS changes without each one
/// waiting for a lookup. Empty until the first answer; a failed lookup keeps the last one.
///
/// Read once per new connection, written once per interval: a mutex is simplest and costs
/// nothing next to a connect.
class address_cache {
public:
  void set(std::vector<asio::ip::tcp::endpoint> addresses) {
    const std::lock_guard lock{mutex_};
    addresses_ = std::move(addresses);
    ++updates_;
  }

  [[nodiscard]] std::vector<asio::ip::tcp::endpoint> get() const {
    const std::lock_guard lock{mutex_};
    return addresses_;
  }

  /// Answers stored so far.
  [[nodiscard]] std::uint64_t updates() const {
    const std::lock_guard lock{mutex_};
    return updates_;
  }

private:
  mutable std::mutex mutex_;
  std::vector<asio::ip::tcp::endpoint> addresses_;
  std::uint64_t updates_ = 0;
};

} // namespace tether::net
