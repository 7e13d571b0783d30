#pragma once

#include <fcntl.h>

namespace tether::net {

/// Marks a socket close-on-exec. Asio opens and accepts sockets without SOCK_CLOEXEC, so a
/// process that forks and execs (a health check script, any child a library user starts) would
/// pass every connection on, and a connection closed here would stay open to its peer until
/// that child exited.
template <typename Socket>
void close_on_exec(Socket& socket) noexcept {
  ::fcntl(socket.native_handle(), F_SETFD, FD_CLOEXEC);
}

} // namespace tether::net
