// Descriptor passing by hand on sendmsg/recvmsg: Asio has no SCM_RIGHTS (nor SOCK_SEQPACKET in
// the version Debian ships), and no Debian library offers it for C++.
#include "tether/net/fd_passing.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <asio/error.hpp>

namespace tether::net {
namespace {

std::error_code last_error() {
  return {errno, std::system_category()};
}

std::error_code unix_address(const std::string& path, sockaddr_un& out) {
  out = {};
  out.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof out.sun_path) {
    return make_error_code(std::errc::filename_too_long); // 107 bytes at most, and not empty
  }
  std::memcpy(out.sun_path, path.data(), path.size());
  return {};
}

// Waits until `socket` is ready for `events`, up to `timeout`.
std::error_code wait_for(int socket, short events, std::chrono::milliseconds timeout) {
  pollfd p{socket, events, 0};
  for (;;) {
    const int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n > 0) {
      return {};
    }
    if (n == 0) {
      return make_error_code(std::errc::timed_out);
    }
    if (errno != EINTR) {
      return last_error();
    }
  }
}

file_identity identity_of(const struct stat& st) {
  return {st.st_dev, st.st_ino, st.st_ctim.tv_sec * 1'000'000'000LL + st.st_ctim.tv_nsec};
}

} // namespace

void owned_fd::reset() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

std::error_code connect_unix(const std::string& path, owned_fd& out,
                             std::chrono::milliseconds timeout) {
  sockaddr_un address{};
  if (const auto ec = unix_address(path, address)) {
    return ec;
  }
  owned_fd fd{::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)};
  if (!fd) {
    return last_error();
  }
  // A Unix socket connects at once or not at all: EAGAIN is a full backlog (a listener that
  // does not accept), tried again until `timeout` rather than waited on without end.
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API's own cast
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) {
      break;
    }
    if (errno != EAGAIN && errno != EINTR) {
      return last_error();
    }
    if (std::chrono::steady_clock::now() >= give_up) {
      return make_error_code(std::errc::timed_out);
    }
    ::usleep(10'000);
  }
  out = std::move(fd);
  return {};
}

std::error_code listen_unix(const std::string& path, owned_fd& out, file_identity& identity) {
  sockaddr_un address{};
  if (const auto ec = unix_address(path, address)) {
    return ec;
  }
  // Only a socket file is ever replaced (a mistyped path must not remove a config), and only
  // one that refuses connections: its process is gone. One that answers, or that this user may
  // not connect to, belongs to a running process and is left alone.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return make_error_code(std::errc::not_a_socket);
    }
    owned_fd probe;
    const auto refused = connect_unix(path, probe, std::chrono::milliseconds{100});
    if (!refused || refused == std::errc::timed_out) {
      return make_error_code(std::errc::address_in_use);
    }
    if (refused != std::errc::connection_refused) {
      return refused;
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return last_error();
    }
  } else if (errno != ENOENT) {
    return last_error();
  }
  owned_fd fd{::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)};
  if (!fd) {
    return last_error();
  }
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API's own cast
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    return last_error();
  }
  // This user's only: not listening yet, nobody can have connected before the mode is set (and
  // the peer's user id is checked on every connection besides). Not umask around the bind: it
  // is the whole process's, and other threads create files.
  if (::chmod(path.c_str(), 0600) != 0 || ::lstat(path.c_str(), &st) != 0) {
    return last_error();
  }
  identity = identity_of(st);
  if (::listen(fd.get(), 4) != 0) {
    return last_error();
  }
  out = std::move(fd);
  return {};
}

void unlink_if_same(const std::string& path, const file_identity& identity) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && identity_of(st) == identity) {
    ::unlink(path.c_str());
  }
}

std::error_code peer_identity(int socket, unsigned& uid, int& pid) {
  ucred credentials{};
  socklen_t size = sizeof credentials;
  if (::getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) {
    return last_error();
  }
  uid = credentials.uid;
  pid = credentials.pid;
  return {};
}

std::error_code send_message(int socket, std::string_view text, std::span<const int> fds,
                             std::chrono::milliseconds timeout) {
  if (text.size() > max_message_text || fds.size() > max_fds_per_message || text.empty()) {
    return make_error_code(std::errc::message_size);
  }
  iovec data{const_cast<char*>(text.data()), text.size()}; // NOLINT: sendmsg does not write it
  msghdr m{};
  m.msg_iov = &data;
  m.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * max_fds_per_message)> control{};
  if (!fds.empty()) {
    m.msg_control = control.data();
    m.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    if (::sendmsg(socket, &m, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0) {
      return {};
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return last_error();
    }
    if (const auto ec = wait_for(socket, POLLOUT, timeout)) {
      return ec;
    }
  }
}

std::error_code receive_message(int socket, fd_message& out, std::chrono::milliseconds timeout) {
  out.text.assign(max_message_text, '\0');
  out.fds.clear();
  iovec data{out.text.data(), out.text.size()};
  msghdr m{};
  m.msg_iov = &data;
  m.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * max_fds_per_message)> control{};
  m.msg_control = control.data();
  m.msg_controllen = control.size();
  ssize_t n = 0;
  for (;;) {
    n = ::recvmsg(socket, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n >= 0) {
      break;
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return last_error();
    }
    if (timeout.count() == 0) {
      return make_error_code(std::errc::timed_out);
    }
    if (const auto ec = wait_for(socket, POLLIN, timeout)) {
      return ec;
    }
  }
  // Descriptors are taken into `out` first, so that they are closed whatever happens next.
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        out.fds.emplace_back(fd);
      }
    }
  }
  if (n == 0) {
    out.fds.clear();
    return asio::error::eof; // SOCK_SEQPACKET: an empty read is the peer's close
  }
  if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    out.fds.clear();
    return make_error_code(std::errc::message_size);
  }
  out.text.resize(static_cast<std::size_t>(n));
  return {};
}

} // namespace tether::net
