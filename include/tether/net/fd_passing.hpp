#pragma once
// Descriptors passed from one process to another over a Unix socket (SCM_RIGHTS): how a new
// tether process takes the listening sockets over from the running one, with their backlogs, so
// that an upgrade refuses no connection.

#include <chrono>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace tether::net {

/// A descriptor, closed when this goes.
class owned_fd {
public:
  owned_fd() = default;
  explicit owned_fd(int fd) noexcept : fd_{fd} {}
  owned_fd(owned_fd&& o) noexcept : fd_{std::exchange(o.fd_, -1)} {}
  owned_fd& operator=(owned_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  owned_fd(const owned_fd&) = delete;
  owned_fd& operator=(const owned_fd&) = delete;
  ~owned_fd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] explicit operator bool() const noexcept { return fd_ >= 0; }
  /// The descriptor, no longer closed by this.
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset() noexcept;

private:
  int fd_ = -1;
};

/// One message: a line of text and the descriptors that came with it (close-on-exec).
struct fd_message {
  std::string text;
  std::vector<owned_fd> fds;
};

/// The most descriptors one message carries (the kernel's SCM_MAX_FD is 253).
inline constexpr std::size_t max_fds_per_message = 200;
/// The longest text of a message.
inline constexpr std::size_t max_message_text = 4096;

/// Which file a path named when it was made (so that only that one is removed later).
/// (An inode number freed is soon given to the next file: its change time tells them apart.)
struct file_identity {
  unsigned long device = 0;
  unsigned long inode = 0;
  long long changed_ns = 0;
  friend bool operator==(const file_identity&, const file_identity&) = default;
};

/// A SOCK_SEQPACKET socket listening at `path`, readable and writable by this user only
/// (mode 0600), close-on-exec and non-blocking; `identity` says which file it made. A socket
/// file left at `path` by a process that is gone is replaced; one some process still answers
/// on is EADDRINUSE, and a file that is not a socket is ENOTSOCK (never removed).
std::error_code listen_unix(const std::string& path, owned_fd& out, file_identity& identity);

/// Removes `path` if it is still the file `identity` names (not one another process made
/// there since).
void unlink_if_same(const std::string& path, const file_identity& identity);

/// Connects to the SOCK_SEQPACKET socket at `path` (close-on-exec, non-blocking), trying for up
/// to `timeout` while its backlog is full.
std::error_code connect_unix(const std::string& path, owned_fd& out,
                             std::chrono::milliseconds timeout);

/// The effective user id and the process id of the process at the other end of Unix socket
/// `socket` (the kernel's word, not the peer's).
std::error_code peer_identity(int socket, unsigned& uid, int& pid);

/// Sends `text` (at most max_message_text bytes) with `fds` (at most max_fds_per_message)
/// attached, as one message, waiting up to `timeout` for room.
std::error_code send_message(int socket, std::string_view text, std::span<const int> fds,
                             std::chrono::milliseconds timeout);

/// Receives one message, waiting up to `timeout` for it (zero: only what is there now).
/// The peer gone is asio::error::eof; nothing in time, std::errc::timed_out; a message cut
/// short (text or descriptors beyond the limits), std::errc::message_size, with its
/// descriptors closed.
std::error_code receive_message(int socket, fd_message& out, std::chrono::milliseconds timeout);

} // namespace tether::net
