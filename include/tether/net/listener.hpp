#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <system_error>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include "tether/core/clock.hpp"

namespace tether::net {

/// How a listening socket is shared.
struct listen_options {
  /// SO_REUSEPORT: several sockets (a proxy's workers) listen on one address and the kernel
  /// spreads connections over them.
  bool reuse_port = false;
  /// With reuse_port: refuse to bind when a socket that is not ours already listens there, as
  /// it would on any port without SO_REUSEPORT. Otherwise a second process started by mistake
  /// on the same port would silently take a share of the connections.
  bool exclusive = true;
  /// Listen at once; false: bound only, until start_listening() (a socket that is not
  /// listening yet takes no connection, so nothing is queued in it if its owner gives up).
  bool listen = true;
};

/// Makes a socket opened with `listen = false` listen.
std::error_code start_listening(int fd);

/// Opens `acceptor` listening on `endpoint`: close-on-exec, SO_REUSEADDR, SO_REUSEPORT when
/// asked. With reuse_port and exclusive, a port another socket listens on is refused with
/// EADDRINUSE (checked by a bind without SO_REUSEPORT first; port 0 is never taken).
std::error_code open_listener(asio::ip::tcp::acceptor& acceptor,
                              const asio::ip::tcp::endpoint& endpoint,
                              const listen_options& options = {});

/// Closes `acceptor`, taken out of its io_context's epoll set first. A listening socket with
/// other descriptors (a copy kept to pass on, or another process's after a take-over) stays
/// open when this one closes, and epoll would go on reporting it to a reactor that forgot it.
/// Its pending accept ends with operation_aborted.
void close_listener(asio::ip::tcp::acceptor& acceptor);

/// Why an accept failed, as a metric label would say it.
enum class accept_failure : std::uint8_t {
  descriptors, ///< EMFILE or ENFILE: the process or the system is out of file descriptors
  memory,      ///< ENOBUFS or ENOMEM
  other,       ///< anything else (a connection reset before it was accepted, ...)
};

/// "descriptors", "memory", "other".
[[nodiscard]] const char* to_string(accept_failure f) noexcept;
[[nodiscard]] accept_failure classify_accept_error(std::error_code ec) noexcept;

/// What accept_loop tells its owner besides the connections (each hook optional).
struct accept_hooks {
  /// Every failed accept.
  std::function<void(accept_failure)> on_failure;
  /// The first of a run of failures that pause accepting (out of descriptors or memory): once
  /// per run, so a log line per run and not per attempt.
  std::function<void(std::error_code)> on_pause;
  /// Accepting works again after `failures` failed attempts.
  std::function<void(std::uint64_t failures)> on_resume;
};

/// The first pause after a failed accept for want of descriptors or memory, and the longest;
/// each pause in a run doubles the one before.
inline constexpr clock::duration accept_pause_min = std::chrono::milliseconds{10};
inline constexpr clock::duration accept_pause_max = std::chrono::seconds{1};

/// Accepts connections until `acceptor` is closed, handing each to `on_accept` marked
/// close-on-exec and with TCP_NODELAY. When the process or the system runs out of descriptors
/// or memory, the connection stays in the backlog and the socket stays readable: accepting is
/// paused (10 ms, doubling up to 1 s, until an accept succeeds) instead of retried at once,
/// which would spin a core for as long as the shortage lasts. Connections already open go on
/// being served meanwhile, and free descriptors as they close.
asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor,
                                  std::function<void(asio::ip::tcp::socket)> on_accept,
                                  accept_hooks hooks = {});

} // namespace tether::net
