// Upgrades that refuse no connection: a new tether process takes the listening sockets over from
// the running one through a Unix socket (admin.upgrade_socket), with the connections queued in
// them, as HAProxy's "expose-fd listeners" and Envoy's hot restart pass theirs.
//
// The exchange is one SOCK_SEQPACKET message each way at a time (take_over_protocol.hpp lists
// them): a hello, the old process's listening sockets (one per old worker and listener, and the
// admin's), then "ready" from the new one and "draining" from the old.
// Until "ready" the old process accepts as before: a new one that fails, or dies, leaves it as
// it was.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include "tether/core/detached.hpp"

#include "server_impl.hpp"
#include "session.hpp"
#include "take_over_protocol.hpp"

namespace tether::proxy {
namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
/// One message of the exchange, from a process that is running.
constexpr std::chrono::milliseconds message_timeout{5000};
/// From the sockets passed to "ready": the new process's whole start (TLS contexts, bind,
/// threads). Past it the old one forgets the take-over and goes on.
constexpr std::chrono::milliseconds ready_timeout{60000};
/// A send on the admin thread: a few short messages fit the socket's buffer, so this only
/// bounds a peer that reads nothing.
constexpr std::chrono::milliseconds send_timeout{100};

// One message from `d`, waiting up to `timeout` without holding the admin thread.
asio::awaitable<std::error_code> receive(asio::posix::stream_descriptor& d, net::fd_message& out,
                                         std::chrono::milliseconds timeout) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer{d.get_executor(), timeout};
  auto which = co_await (d.async_wait(asio::posix::descriptor_base::wait_read, use_tuple) ||
                         timer.async_wait(use_tuple));
  if (which.index() == 1) {
    co_return make_error_code(std::errc::timed_out);
  }
  if (const auto [ec] = std::get<0>(which); ec) {
    co_return ec;
  }
  co_return net::receive_message(d.native_handle(), out, std::chrono::milliseconds{0});
}

// Whether `fd` is a TCP socket that listens, and where.
bool listening_tcp(int fd, asio::ip::tcp::endpoint& local) {
  int listening = 0;
  int type = 0;
  socklen_t size = sizeof listening;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || listening == 0) {
    return false;
  }
  size = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) != 0 || type != SOCK_STREAM) {
    return false;
  }
  sockaddr_storage address{};
  size = sizeof address;
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API's own cast
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0 ||
      (address.ss_family != AF_INET && address.ss_family != AF_INET6)) {
    return false;
  }
  local.resize(size);
  std::memcpy(local.data(), &address, size);
  return true;
}

} // namespace

std::error_code server::impl::take_over() {
  const auto& path = shared.cfg.admin.upgrade_socket;
  net::owned_fd connection;
  if (const auto ec = net::connect_unix(path, connection, message_timeout)) {
    failure = ec == std::errc::connection_refused || ec == std::errc::no_such_file_or_directory
                  ? "no tether answers there (" + ec.message() + ")"
                  : ec.message();
    return ec;
  }
  // Only a tether of this user's is trusted with the clients: its sockets are served as given.
  unsigned uid = 0;
  if (const auto ec = net::peer_identity(connection.get(), uid, predecessor_pid)) {
    failure = ec.message();
    return ec;
  }
  if (uid != ::geteuid()) {
    failure = "the process there runs as user " + std::to_string(uid) + ", not as this one";
    return make_error_code(std::errc::permission_denied);
  }
  if (const auto ec =
          net::send_message(connection.get(), take_over::hello(::getpid()), {}, message_timeout)) {
    failure = ec.message();
    return ec;
  }
  for (;;) {
    net::fd_message m;
    if (const auto ec = net::receive_message(connection.get(), m, message_timeout)) {
      taken.clear();
      failure = ec == asio::error::eof ? std::string{"it closed the connection"} : ec.message();
      return ec;
    }
    const auto said = take_over::read(m.text);
    if (said.what == take_over::says::refused) {
      taken.clear();
      failure = "it refused: " + std::string{said.reason};
      return make_error_code(std::errc::operation_not_permitted);
    }
    if (said.what == take_over::says::end) {
      break;
    }
    // The words say which listener a socket is for; where it listens is asked of the socket.
    asio::ip::tcp::endpoint local;
    if (said.what != take_over::says::socket || m.fds.size() != 1 ||
        !listening_tcp(m.fds.front().get(), local)) {
      taken.clear();
      failure = "it sent what this tether does not understand: \"" + m.text.substr(0, 200) +
                "\" with " + std::to_string(m.fds.size()) +
                " descriptors (one listening TCP socket expected)";
      return make_error_code(std::errc::protocol_error);
    }
    passed_socket s;
    s.kind = said.kind;
    s.name = said.name;
    s.address = local.address().to_string();
    s.port = local.port();
    s.fd = std::move(m.fds.front());
    taken.push_back(std::move(s));
  }
  predecessor = std::move(connection);
  log_event(shared, spdlog::level::info,
            "took " + std::to_string(taken.size()) + " listening sockets over from pid " +
                std::to_string(predecessor_pid) + " (" + path + ")");
  return {};
}

bool server::impl::passed_socket::matches(std::string_view k, std::string_view n,
                                          const std::string& a, std::uint16_t p) const {
  std::error_code ec;
  const auto wanted = asio::ip::make_address(a, ec); // "::" and "0::0" are one address
  return kind == k && name == n && !ec && wanted == asio::ip::make_address(address, ec) &&
         (p == 0 || p == port);
}

std::vector<net::owned_fd> server::impl::take_listener(const listener_config& l) {
  // The old listener of the same name, else (as a reload does) one on the same address and
  // port under another name: a listener renamed with the upgrade keeps its sockets.
  std::vector<net::owned_fd> out;
  for (const bool by_name : {true, false}) {
    for (auto it = taken.begin(); it != taken.end() && (by_name || l.port != 0);) {
      if (it->matches("listener", by_name ? l.name : it->name, l.address, l.port)) {
        out.push_back(std::move(it->fd));
        it = taken.erase(it);
      } else {
        ++it;
      }
    }
    if (!out.empty()) {
      break;
    }
  }
  return out;
}

void server::impl::finish_take_over() {
  const auto pid = std::to_string(predecessor_pid);
  net::fd_message answer;
  auto ec = net::send_message(predecessor.get(), take_over::ready(::getpid()), {}, message_timeout);
  if (!ec) {
    ec = net::receive_message(predecessor.get(), answer, message_timeout);
  }
  if (ec || take_over::read(answer.text).what != take_over::says::draining) {
    // This process accepts on its sockets either way; the old one may too until it stops.
    log_event(shared, spdlog::level::warn,
              "pid " + pid + " did not say it drains (" +
                  (ec ? ec.message() : "it said \"" + answer.text + "\"") +
                  "): it may go on accepting on the same sockets until it stops");
  } else {
    log_event(shared, spdlog::level::info, "pid " + pid + " accepts no more and drains");
  }
  predecessor.reset();
  if (listen_for_upgrades()) {
    log_event(shared, spdlog::level::err, failure + "; no later upgrade can take over from here");
    failure.clear();
  }
}

std::error_code server::impl::listen_for_upgrades() {
  const auto& path = shared.cfg.admin.upgrade_socket;
  net::owned_fd fd;
  if (const auto ec = net::listen_unix(path, fd, upgrade_file)) {
    failure = ec == std::errc::address_in_use
                  ? "another tether answers on the upgrade socket " + path +
                        " (`tether proxy --take-over` takes its listeners over)"
                  : "cannot listen on the upgrade socket " + path + ": " + ec.message() +
                        (ec == std::errc::not_a_socket ? " (a file that is not one is there)" : "");
    return ec;
  }
  upgrade_path_ours = true;
  // The admin thread owns the socket; it may not run yet (a start), or run already (the end of
  // a take-over).
  asio::post(admin_io, [this, raw = fd.release()] {
    upgrade_listener = std::make_unique<asio::posix::stream_descriptor>(admin_io, raw);
    asio::co_spawn(admin_io, upgrade_loop(), report_exceptions{"the upgrade socket"});
  });
  return {};
}

asio::awaitable<void> server::impl::upgrade_loop() {
  while (upgrade_listener) {
    const auto [ec] =
        co_await upgrade_listener->async_wait(asio::posix::descriptor_base::wait_read, use_tuple);
    if (ec || !upgrade_listener) {
      co_return; // closed: stopping, or handed over
    }
    const int fd = ::accept4(upgrade_listener->native_handle(), nullptr, nullptr,
                             SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        log_event(shared, spdlog::level::warn,
                  std::string{"the upgrade socket: accept failed: "} + std::strerror(errno));
        asio::steady_timer pause{admin_io, std::chrono::milliseconds{100}};
        co_await pause.async_wait(use_tuple); // out of descriptors: not a busy loop
      }
      continue;
    }
    asio::co_spawn(admin_io, hand_over(net::owned_fd{fd}), report_exceptions{"a take-over"});
  }
}

asio::awaitable<void> server::impl::hand_over(net::owned_fd connection) {
  const auto refuse = [this](int socket, const std::string& why) {
    (void)net::send_message(socket, take_over::refused(why), {}, send_timeout);
    log_event(shared, spdlog::level::warn, "refused a take-over: " + why);
  };
  // Only this user's processes: the sockets let whoever has them answer this tether's clients.
  unsigned uid = 0;
  int pid = 0;
  if (net::peer_identity(connection.get(), uid, pid) || uid != ::geteuid()) {
    refuse(connection.get(), "it runs as another user");
    co_return;
  }
  asio::posix::stream_descriptor d{admin_io, connection.release()};
  net::fd_message hello;
  if (const auto ec = co_await receive(d, hello, message_timeout)) {
    co_return; // not a tether, or gone
  }
  if (take_over::read(hello.text).what != take_over::says::hello) {
    refuse(d.native_handle(),
           "it is not a tether of this version (it said \"" + hello.text.substr(0, 100) + "\")");
    co_return;
  }
  const auto who = "pid " + std::to_string(pid);
  if (handing_over || handed_over || shared.draining) {
    refuse(d.native_handle(), handed_over || shared.draining ? "this tether is stopping"
                                                             : "another take-over is under way");
    co_return;
  }
  handing_over = true;
  handover_connection = &d;
  struct done_guard {
    impl& s;
    ~done_guard() {
      s.handing_over = false;
      s.handover_connection = nullptr;
    }
  } done{*this};

  for (const auto& p : passable) {
    const int fd = p.fd.get();
    const auto text = take_over::socket(p.kind, p.port, p.address, p.name);
    if (const auto ec = net::send_message(d.native_handle(), text, {&fd, 1}, send_timeout)) {
      log_event(shared, spdlog::level::warn,
                "a take-over by " + who + " failed: " + ec.message() + "; accepting as before");
      co_return;
    }
  }
  if (net::send_message(d.native_handle(), take_over::end(::getpid()), {}, send_timeout)) {
    co_return;
  }
  log_event(shared, spdlog::level::info,
            "passed " + std::to_string(passable.size()) + " listening sockets to " + who +
                "; accepting until it says it does");
  net::fd_message ready;
  const auto ec = co_await receive(d, ready, ready_timeout);
  if (ec == asio::error::operation_aborted || shared.draining) {
    log_event(shared, spdlog::level::warn, "stopping: the take-over by " + who + " is dropped");
    co_return;
  }
  if (ec || take_over::read(ready.text).what != take_over::says::ready) {
    log_event(
        shared, spdlog::level::warn,
        who + " gave the take-over up (" +
            (ec ? (ec == asio::error::eof ? std::string{"it closed the connection"} : ec.message())
                : "it said \"" + ready.text.substr(0, 100) + "\"") +
            "); accepting as before");
    co_return;
  }
  // It accepts now: this process stops, and the sockets live on in the new one. The upgrade
  // socket's file is its now.
  handed_over = true;
  shared.draining = true; // kept-alive clients are told to reconnect (to the new process)
  upgrade_listener.reset();
  passable.clear();
  admin->stop_accepting();
  // Waited for (workers never wait on the admin thread): once the new process hears
  // "draining", no connection is accepted here any more.
  stop_accepting();
  (void)net::send_message(d.native_handle(), take_over::draining, {}, send_timeout);
  log_event(shared, spdlog::level::info, "handed the listeners over to " + who + "; draining");
  if (handed_over_callback) {
    handed_over_callback(pid);
  }
}

void server::impl::remember_passable(std::string kind, std::string name, const std::string& address,
                                     std::uint16_t port, int fd) {
  // A copy: stop() closes the workers' own while a take-over may still be passing this one.
  net::owned_fd copy{::fcntl(fd, F_DUPFD_CLOEXEC, 0)};
  if (!copy) {
    log_event(shared, spdlog::level::warn,
              "cannot keep the " + kind + " socket '" + name +
                  "' for an upgrade: " + std::strerror(errno));
    return;
  }
  passable.push_back({std::move(kind), std::move(name), address, port, std::move(copy)});
}

void server::impl::stop_upgrades() {
  upgrade_listener.reset();
  if (handover_connection != nullptr) {
    std::error_code ignored;
    handover_connection->cancel(ignored); // the new process reads the close as "not draining"
  }
  if (upgrade_path_ours && !handed_over) { // handed over: the file is the new process's
    net::unlink_if_same(shared.cfg.admin.upgrade_socket, upgrade_file); // not a new process's
  }
  upgrade_path_ours = false;
  passable.clear();
}

} // namespace tether::proxy
