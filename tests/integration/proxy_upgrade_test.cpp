// Upgrades without a refused connection: a second tether proxy takes the listening sockets over
// from a running one through admin.upgrade_socket (start_options::take_over), real clients
// (curl, a kept-alive socket) on both sides, real backends behind. Both proxies run in this
// process; the sockets go through the kernel (SCM_RIGHTS) as between two processes.
#include "tether/proxy/server.hpp"

#include <gtest/gtest.h>

#include <poll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <string>
#include <thread>

#include "http_test_server.hpp"
#include "proxy_fixture.hpp"

namespace tether::proxy {
namespace {

using namespace std::chrono_literals;
using testing::http_test_server;
using testing::run;
using steady = std::chrono::steady_clock;

/// A path for the upgrade socket, removed at the end.
class socket_path {
public:
  socket_path()
      : path_{"/tmp/tether-upgrade-" + std::to_string(::getpid()) + "-" +
              std::to_string(counter_++) + ".sock"} {
    std::remove(path_.c_str());
  }
  socket_path(const socket_path&) = delete;
  socket_path& operator=(const socket_path&) = delete;
  ~socket_path() { std::remove(path_.c_str()); }
  [[nodiscard]] const std::string& path() const { return path_; }

private:
  static inline int counter_ = 0;
  std::string path_;
};

/// `workers` workers, one listener "main" and the admin listener on the given ports, every path
/// to the backend on `backend`, and `extra` listeners appended.
std::string upgradable(const std::string& socket, std::uint16_t backend,
                       const std::string& listener_port = "0", const std::string& admin_port = "0",
                       const std::string& extra = "", int workers = 2) {
  return "workers: " + std::to_string(workers) +
         "\n"
         "drain_timeout: 5s\n"
         "listeners:\n"
         "  - {name: main, address: 127.0.0.1, port: " +
         listener_port + "}\n" + extra + "admin: {address: 127.0.0.1, port: " + admin_port +
         ", upgrade_socket: \"" + socket +
         "\"}\n"
         "routes: [{path_prefix: /, cluster: backend}]\n"
         "clusters: [{name: backend, endpoints: [\"127.0.0.1:" +
         std::to_string(backend) + "\"]}]\n";
}

std::unique_ptr<server> made(const std::string& yaml) {
  auto l = load_config(yaml, "upgrade.yaml");
  EXPECT_TRUE(l.value) << (l.errors.empty() ? "" : l.errors[0]);
  return std::make_unique<server>(*l.value);
}

std::string get(std::uint16_t port, const std::string& path = "/") {
  return run("curl -sS --max-time 5 -o /dev/null -w '%{http_code}' http://127.0.0.1:" +
             std::to_string(port) + path + " 2>&1");
}

/// Calls `done` until it says true (each call may act), 5 s at most.
template <class F>
bool eventually(F done, steady::duration bound = 5s) {
  const auto give_up = steady::now() + bound;
  for (;;) {
    if (done()) {
      return true;
    }
    if (steady::now() >= give_up) {
      return false;
    }
    std::this_thread::sleep_for(5ms);
  }
}

/// Backends a and b, and a proxy on a (two workers), started with an upgrade socket; what it
/// is told when handed over in `handed_to`.
class proxy_upgrade_of_a_running_proxy : public ::testing::Test {
protected:
  void SetUp() override {
    old_proxy->on_handed_over([this](int pid) { handed_to = pid; });
    ASSERT_FALSE(old_proxy->start()) << old_proxy->start_failure();
    port = old_proxy->listener_ports().at(0);
  }

  http_test_server a;
  http_test_server b;
  socket_path socket;
  std::unique_ptr<server> old_proxy = made(upgradable(socket.path(), a.port()));
  std::atomic<int> handed_to{0};
  std::uint16_t port = 0;
};

TEST_F(proxy_upgrade_of_a_running_proxy,
       a_new_proxy_takes_the_ports_over_and_the_old_one_drains_its_clients) {
  const auto admin = old_proxy->admin_port();
  struct stat mode {};
  ASSERT_EQ(::stat(socket.path().c_str(), &mode), 0);
  EXPECT_EQ(mode.st_mode & 0777, 0600) << "the upgrade socket is this user's only";

  testing::kept_alive_client client{port};
  ASSERT_NE(client.get("/one").find("200 OK"), std::string::npos);
  ASSERT_EQ(a.requests(), 1);

  // The new one names the listener's port, and says 0 for the admin port: taken either way. It
  // has one worker for the old one's two sockets.
  auto new_proxy = made(upgradable(socket.path(), b.port(), std::to_string(port), "0", "", 1));
  ASSERT_FALSE(new_proxy->start({.take_over = true})) << new_proxy->start_failure();
  EXPECT_EQ(new_proxy->listener_ports().at(0), port);
  EXPECT_EQ(new_proxy->admin_port(), admin);
  ASSERT_TRUE(eventually([&] { return handed_to != 0; }));

  // The old one drains: the kept-alive client's next request is still answered there, with
  // Connection: close, and new connections go to the new one.
  const auto last = client.get("/two");
  EXPECT_NE(last.find("200 OK"), std::string::npos) << last;
  EXPECT_NE(last.find("Connection: close"), std::string::npos) << last;
  EXPECT_EQ(a.requests(), 2);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(get(port), "200");
  }
  EXPECT_EQ(b.requests(), 10);
  EXPECT_EQ(a.requests(), 2);
  old_proxy->stop(); // what its owner does when told: waits for the drain
  EXPECT_EQ(get(admin, "/ready"), "200") << "the admin listener was taken over too";
  EXPECT_EQ(::access(socket.path().c_str(), F_OK), 0) << "the new one answers there now";

  // And it can be taken over in turn, by one with three workers (the third shares a socket).
  // It also renames the listener: the same address and port keep the sockets, as a reload does.
  auto renamed = upgradable(socket.path(), a.port(), std::to_string(port), "0", "", 3);
  renamed.replace(renamed.find("name: main"), 10, "name: front");
  auto third = made(renamed);
  ASSERT_FALSE(third->start({.take_over = true})) << third->start_failure();
  EXPECT_EQ(third->listener_ports().at(0), port);
  new_proxy->stop();
  EXPECT_EQ(get(port), "200");
  EXPECT_EQ(a.requests(), 3);
  third->stop();
  EXPECT_NE(::access(socket.path().c_str(), F_OK), 0) << "the last one removes its socket";
}

TEST_F(proxy_upgrade_of_a_running_proxy, a_take_over_that_fails_leaves_the_old_proxy_as_it_was) {

  // A second listener on a port another socket holds: the new proxy cannot start.
  asio::io_context io;
  asio::ip::tcp::acceptor taken{io, {asio::ip::make_address("127.0.0.1"), 0}};
  const auto busy = std::to_string(taken.local_endpoint().port());
  auto failing = made(upgradable(socket.path(), b.port(), "0", "0",
                                 "  - {name: extra, address: 127.0.0.1, port: " + busy + "}\n"));
  const auto ec = failing->start({.take_over = true});
  ASSERT_TRUE(ec);
  EXPECT_NE(failing->start_failure().find("listener 'extra'"), std::string::npos)
      << failing->start_failure();
  failing.reset();

  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(get(port), "200");
  }
  EXPECT_EQ(a.requests(), 5);
  EXPECT_EQ(b.requests(), 0);
  EXPECT_EQ(handed_to, 0);

  // Once the failed one is gone, the old proxy hands over as if nothing happened (it may still
  // be noticing the failed one's close, and refuse the first tries).
  std::unique_ptr<server> next;
  ASSERT_TRUE(eventually([&] {
    next = made(upgradable(socket.path(), b.port()));
    return !next->start({.take_over = true});
  })) << next->start_failure();
  EXPECT_TRUE(eventually([&] { return handed_to != 0; }));
  old_proxy->stop();
  EXPECT_EQ(get(port), "200");
  EXPECT_EQ(b.requests(), 1);
  next->stop();
}

/// A plain client of the upgrade socket: what a broken or foreign program would do.
class unix_client {
public:
  explicit unix_client(const std::string& path)
      : fd_{::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)} {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
    EXPECT_EQ(::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  }
  unix_client(const unix_client&) = delete;
  unix_client& operator=(const unix_client&) = delete;
  ~unix_client() { ::close(fd_); }
  void send(const std::string& text) const { ::send(fd_, text.data(), text.size(), 0); }
  /// The next message, 5 s at most; "" when the peer closed or nothing came.
  [[nodiscard]] std::string receive() const {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) {
      return {};
    }
    char buf[512];
    const auto n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string{};
  }

private:
  int fd_;
};

TEST_F(proxy_upgrade_of_a_running_proxy,
       a_silent_or_foreign_peer_on_the_upgrade_socket_holds_nothing_up) {

  unix_client foreign{socket.path()};
  foreign.send("GET / HTTP/1.1");
  EXPECT_EQ(foreign.receive().rfind("refused it is not a tether of this version", 0), 0U);

  // One that says nothing: the proxy serves, and a real take-over goes ahead beside it.
  unix_client silent{socket.path()};
  EXPECT_EQ(get(port), "200");
  EXPECT_EQ(get(old_proxy->admin_port(), "/ready"), "200");
  auto next = made(upgradable(socket.path(), b.port()));
  ASSERT_FALSE(next->start({.take_over = true})) << next->start_failure();
  old_proxy->stop();
  EXPECT_EQ(get(port), "200");
  EXPECT_EQ(b.requests(), 1);
  next->stop();
}

TEST(proxy_upgrade, a_take_over_with_no_tether_on_the_socket_says_so) {
  http_test_server a;
  socket_path socket;
  auto lone = made(upgradable(socket.path(), a.port()));
  ASSERT_TRUE(lone->start({.take_over = true}));
  EXPECT_NE(lone->start_failure().find("cannot take the listeners over from the tether on " +
                                       socket.path() + ": no tether answers there"),
            std::string::npos)
      << lone->start_failure();

  // And without an upgrade socket in the config, a take-over says what is missing.
  auto without = made(testing::proxy_fixture::yaml_for({a.port()}, "", false));
  ASSERT_TRUE(without->start({.take_over = true}));
  EXPECT_NE(without->start_failure().find("needs admin.upgrade_socket"), std::string::npos)
      << without->start_failure();
}

TEST(proxy_upgrade, a_second_proxy_that_does_not_take_over_is_refused_the_upgrade_socket) {
  http_test_server a;
  socket_path socket;
  auto first = made(upgradable(socket.path(), a.port()));
  ASSERT_FALSE(first->start()) << first->start_failure();
  auto second = made(upgradable(socket.path(), a.port()));
  ASSERT_TRUE(second->start());
  EXPECT_NE(
      second->start_failure().find("another tether answers on the upgrade socket " + socket.path()),
      std::string::npos)
      << second->start_failure();
  second.reset();
  EXPECT_EQ(get(first->listener_ports().at(0)), "200") << "the first one is untouched";
  first->stop();
}

TEST(proxy_upgrade, a_socket_file_left_by_a_process_that_is_gone_is_replaced) {
  http_test_server a;
  socket_path socket;
  {
    // A socket bound and closed: the file stays, nobody answers.
    const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", socket.path().c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
    ::close(fd);
  }
  auto p = made(upgradable(socket.path(), a.port()));
  ASSERT_FALSE(p->start()) << p->start_failure();
  EXPECT_EQ(get(p->listener_ports().at(0)), "200");
  p->stop();
}

} // namespace
} // namespace tether::proxy
