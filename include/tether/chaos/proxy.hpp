#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "tether/chaos/model.hpp"
#include "tether/core/random.hpp"

namespace tether::chaos {

/// Bytes through a proxy, per direction (index: stream).
struct proxy_counters {
  std::array<std::atomic<std::uint64_t>, 2> received{}; ///< read from the sender
  std::array<std::atomic<std::uint64_t>, 2> sent{};     ///< written to the receiver
};

class link;

/// A TCP proxy with toxics, as Toxiproxy's: every accepted connection gets a connection to the
/// upstream and two pumps (upstream, downstream) that pass bytes through the toxics of their
/// direction, in the order the toxics were added. Toxics can be added, changed and removed while
/// connections are live. Everything runs on one executor; call it only from there.
class proxy : public std::enable_shared_from_this<proxy> {
  struct private_tag {};

public:
  static std::shared_ptr<proxy> create(asio::io_context::executor_type executor,
                                       proxy_config config, random_source& random);
  proxy(private_tag, asio::io_context::executor_type executor, proxy_config config,
        random_source& random);
  proxy(const proxy&) = delete;
  proxy& operator=(const proxy&) = delete;
  ~proxy();

  /// Binds the listen address and starts accepting (no-op when already listening). The error
  /// says why when it cannot.
  std::error_code start();
  /// Closes the listener and every live connection.
  void stop();
  [[nodiscard]] bool listening() const noexcept { return acceptor_.is_open(); }

  [[nodiscard]] const proxy_config& config() const noexcept { return config_; }
  /// Changes the config: a new listen address or upstream restarts the proxy (live connections
  /// close), then `enabled` starts or stops it. Toxics stay.
  std::error_code reconfigure(const proxy_config& next);

  [[nodiscard]] const std::vector<toxic>& toxics() const noexcept { return toxics_; }
  [[nodiscard]] const toxic* find_toxic(std::string_view name) const noexcept;
  /// False when a toxic of that name exists.
  bool add_toxic(toxic t);
  /// False when there is none of that name.
  bool update_toxic(const toxic& t);
  bool remove_toxic(std::string_view name);
  void remove_all_toxics();

  [[nodiscard]] const proxy_counters& counters() const noexcept { return counters_; }
  [[nodiscard]] std::size_t live_connections() const noexcept { return links_.size(); }

  // For links.
  [[nodiscard]] random_source& random() noexcept { return random_; }
  proxy_counters& mutable_counters() noexcept { return counters_; }
  void forget(link* l) noexcept;

private:
  void accept();
  void serve(asio::ip::tcp::socket socket);
  void toxics_changed();
  void close_links();

  asio::io_context::executor_type executor_;
  proxy_config config_;
  random_source& random_;
  asio::ip::tcp::acceptor acceptor_;
  std::vector<toxic> toxics_;
  std::set<std::shared_ptr<link>> links_;
  proxy_counters counters_;
};

} // namespace tether::chaos
