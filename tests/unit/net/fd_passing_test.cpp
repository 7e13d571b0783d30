// Descriptors passed over a Unix socket (the upgrade's transport): what arrives, and what the
// receiver is told when the peer is gone, slow, or sends more than fits.
#include "tether/net/fd_passing.hpp"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <asio/error.hpp>

namespace tether::net {
namespace {

using namespace std::chrono_literals;

struct socket_pair {
  socket_pair() {
    std::array<int, 2> fds{};
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds.data()), 0);
    a = owned_fd{fds[0]};
    b = owned_fd{fds[1]};
  }
  owned_fd a;
  owned_fd b;
};

std::string temp_path() {
  return "/tmp/tether-fd-passing-" + std::to_string(::getpid()) + ".sock";
}

TEST(fd_passing, a_message_carries_its_text_and_descriptors_that_work_on_the_other_side) {
  socket_pair s;
  std::array<int, 2> pipe_fds{};
  ASSERT_EQ(::pipe(pipe_fds.data()), 0);
  const std::array<int, 1> passed{pipe_fds[1]};
  ASSERT_FALSE(send_message(s.a.get(), "socket listener 8080 127.0.0.1 main", passed, 1s));
  ::close(pipe_fds[1]);

  fd_message m;
  ASSERT_FALSE(receive_message(s.b.get(), m, 1s));
  EXPECT_EQ(m.text, "socket listener 8080 127.0.0.1 main");
  ASSERT_EQ(m.fds.size(), 1U);
  ASSERT_EQ(::write(m.fds[0].get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(pipe_fds[0], &c, 1), 1);
  EXPECT_EQ(c, 'x');
  ::close(pipe_fds[0]);
}

TEST(fd_passing, the_peer_gone_is_eof_and_nothing_in_time_is_a_timeout) {
  socket_pair s;
  fd_message m;
  EXPECT_EQ(receive_message(s.b.get(), m, 0ms), std::errc::timed_out);
  EXPECT_EQ(receive_message(s.b.get(), m, 20ms), std::errc::timed_out);
  s.a.reset();
  EXPECT_EQ(receive_message(s.b.get(), m, 1s), asio::error::eof);
}

TEST(fd_passing, a_message_longer_than_the_limit_is_refused_on_both_sides) {
  socket_pair s;
  const std::string too_long(max_message_text + 1, 'x');
  EXPECT_EQ(send_message(s.a.get(), too_long, {}, 1s), std::errc::message_size);
  EXPECT_EQ(send_message(s.a.get(), "", {}, 1s), std::errc::message_size);
  // Sent by another program: cut short on receipt, and said so.
  ASSERT_EQ(::send(s.a.get(), too_long.data(), too_long.size(), 0),
            static_cast<ssize_t>(too_long.size()));
  fd_message m;
  EXPECT_EQ(receive_message(s.b.get(), m, 1s), std::errc::message_size);
  EXPECT_TRUE(m.fds.empty());
}

TEST(fd_passing, a_listening_path_is_this_users_only_and_a_live_one_is_not_taken) {
  const auto path = temp_path();
  std::remove(path.c_str());
  owned_fd first;
  file_identity made;
  ASSERT_FALSE(listen_unix(path, first, made));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  owned_fd second;
  file_identity other;
  EXPECT_EQ(listen_unix(path, second, other), std::errc::address_in_use);

  owned_fd client;
  ASSERT_FALSE(connect_unix(path, client, 1s));
  const int accepted = ::accept4(first.get(), nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(accepted, 0);
  unsigned uid = 0;
  int pid = 0;
  ASSERT_FALSE(peer_identity(accepted, uid, pid));
  EXPECT_EQ(uid, ::geteuid());
  EXPECT_EQ(pid, ::getpid());
  ::close(accepted);

  // Its process gone (the socket closed, the file left): the path is taken again, and the
  // first one's removal at its end leaves the new file alone.
  first.reset();
  client.reset();
  ASSERT_FALSE(listen_unix(path, second, other));
  unlink_if_same(path, made);
  EXPECT_EQ(::access(path.c_str(), F_OK), 0);
  unlink_if_same(path, other);
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
  second.reset();
  EXPECT_EQ(listen_unix(std::string(108, 'a'), second, other), std::errc::filename_too_long);
  EXPECT_EQ(connect_unix(path, client, 10ms), std::errc::no_such_file_or_directory);
}

TEST(fd_passing, a_file_that_is_not_a_socket_is_never_replaced) {
  const auto path = temp_path();
  { std::ofstream{path} << "listeners: []\n"; }
  owned_fd fd;
  file_identity made;
  EXPECT_EQ(listen_unix(path, fd, made), std::errc::not_a_socket);
  std::ifstream kept{path};
  std::string line;
  std::getline(kept, line);
  EXPECT_EQ(line, "listeners: []");
  std::remove(path.c_str());
}

TEST(fd_passing, a_connect_to_a_listener_that_accepts_nothing_gives_up_in_time) {
  const auto path = temp_path();
  std::remove(path.c_str());
  owned_fd listening;
  file_identity made;
  ASSERT_FALSE(listen_unix(path, listening, made));
  // Its backlog fills (it never accepts); a connect then waits no longer than it was told.
  std::vector<owned_fd> queued;
  std::error_code ec;
  for (int i = 0; i < 64 && !ec; ++i) {
    owned_fd c;
    ec = connect_unix(path, c, 50ms);
    queued.push_back(std::move(c));
  }
  EXPECT_EQ(ec, std::errc::timed_out);
  unlink_if_same(path, made);
}

} // namespace
} // namespace tether::net
