#include "tether/http/server.hpp"
#include "tether/core/detached.hpp"
#include "tether/http/fields.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <set>

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "tether/net/listener.hpp"
#include "tether/net/tcp_connector.hpp"

#include "text.hpp"

namespace tether::http {

namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

/// Collects whole requests from the parser; several may arrive in one read (pipelining).
class request_collector final : public parser_handler {
public:
  void on_head(const message_head& head) override {
    current_ = {};
    current_.method = head.method;
    current_.target = head.target;
    current_.headers.reserve(head.headers.size());
    for (const auto& h : head.headers) {
      current_.headers.push_back({std::string{h.name}, std::string{h.value}});
    }
    keep_alive_ = head.keep_alive;
  }
  void on_body(std::string_view piece) override { current_.body.append(piece); }
  void on_message_complete() override { done.push_back({std::move(current_), keep_alive_}); }

  struct complete {
    server_request request;
    bool keep_alive;
  };
  std::vector<complete> done;

private:
  server_request current_;
  bool keep_alive_ = true;
};

void write_response(std::string& out, const server_response& r, bool close) {
  std::vector<header> fields;
  fields.reserve(r.headers.size());
  for (const auto& f : r.headers) {
    fields.push_back({f.name, f.value});
  }
  write_own_response(out, {r.status, r.content_type, fields, r.body, false,
                           close ? connection_field::close : connection_field::none});
}

} // namespace

const std::string* server_request::find(std::string_view name) const noexcept {
  const auto* f = find_field(headers, name);
  return f != nullptr ? &f->value : nullptr;
}

struct small_server::state {
  state(asio::io_context::executor_type ex, handler h, server_options o)
      : acceptor{ex}, on_request{std::move(h)}, options{o} {}

  asio::ip::tcp::acceptor acceptor;
  handler on_request;
  server_options options;
  std::set<asio::ip::tcp::socket*> connections;
  bool stopped = false;
};

namespace {

// Reads requests and answers them until the peer closes, a timeout passes, or the server stops.
asio::awaitable<void> serve(std::shared_ptr<small_server::state> s, asio::ip::tcp::socket socket) {
  using namespace asio::experimental::awaitable_operators;
  s->connections.insert(&socket);
  parser p{parser::kind::request, s->options.limits};
  request_collector requests;
  std::array<char, 8192> buffer{};
  std::string out;
  asio::steady_timer timer{socket.get_executor()};
  for (;;) {
    // The idle timeout between requests, the request timeout once one has begun.
    timer.expires_after(p.idle() ? s->options.idle_timeout : s->options.request_timeout);
    auto which = co_await (socket.async_read_some(asio::buffer(buffer), use_tuple) ||
                           timer.async_wait(use_tuple));
    if (which.index() == 1) {
      break; // timed out
    }
    auto [ec, n] = std::get<0>(which);
    if (ec) {
      break;
    }
    p.feed({buffer.data(), n}, requests);
    out.clear();
    bool close = false;
    for (auto& r : requests.done) {
      const server_response response = s->on_request(r.request);
      close = !r.keep_alive;
      write_response(out, response, close);
      if (close) {
        break;
      }
    }
    requests.done.clear();
    if (p.error() && !close) {
      server_response bad;
      bad.status = status_of(static_cast<errc>(p.error().value()));
      bad.content_type = "text/plain";
      bad.body = p.error().message() + "\n";
      write_response(out, bad, true);
      close = true;
    }
    if (!out.empty()) {
      auto [write_error, written] =
          co_await asio::async_write(socket, asio::buffer(out), use_tuple);
      if (write_error) {
        break;
      }
    }
    if (close || s->stopped) {
      break;
    }
  }
  s->connections.erase(&socket);
  std::error_code ignored;
  socket.shutdown(asio::socket_base::shutdown_send, ignored);
  socket.close(ignored);
}

} // namespace

std::shared_ptr<small_server> small_server::create(asio::io_context::executor_type executor,
                                                   handler h, server_options options) {
  return std::make_shared<small_server>(private_tag{}, std::move(executor), std::move(h), options);
}

small_server::small_server(private_tag, asio::io_context::executor_type executor, handler h,
                           server_options options)
    : executor_{std::move(executor)}, s_{std::make_shared<state>(executor_, std::move(h),
                                                                 options)} {}

small_server::~small_server() = default;

std::error_code small_server::listen(const std::string& address, std::uint16_t port) {
  std::error_code ec;
  const auto ip = asio::ip::make_address(address, ec);
  if (ec) {
    return ec;
  }
  if (ec = net::open_listener(s_->acceptor, {ip, port}); ec) {
    return ec;
  }
  return accept();
}

std::error_code small_server::listen_on(int fd) {
  sockaddr_storage local{};
  socklen_t size = sizeof local;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &size) != 0) { // NOLINT: sockets API
    const std::error_code ec{errno, std::system_category()};
    ::close(fd);
    return ec;
  }
  std::error_code ec;
  s_->acceptor.assign(local.ss_family == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), fd,
                      ec);
  if (ec) {
    ::close(fd);
    return ec;
  }
  return accept();
}

std::error_code small_server::accept() {
  std::error_code ec;
  port_ = s_->acceptor.local_endpoint(ec).port();
  if (ec) {
    return ec;
  }
  // net's accept loop, which pauses instead of spinning when descriptors run out; spawned from
  // here, not awaited with a lambda made in the co_await (g++ 12 destroys those twice).
  asio::co_spawn(executor_,
                 net::accept_loop(s_->acceptor,
                                  [s = s_](asio::ip::tcp::socket socket) {
                                    asio::co_spawn(
                                        s->acceptor.get_executor(), serve(s, std::move(socket)),
                                        report_exceptions{"a small server's connection"});
                                  }),
                 report_exceptions{"a small server's accept loop"});
  return {};
}

int small_server::native_handle() noexcept {
  return s_->acceptor.native_handle();
}

void small_server::stop_accepting() {
  net::close_listener(s_->acceptor);
}

void small_server::stop() {
  s_->stopped = true;
  net::close_listener(s_->acceptor);
  std::error_code ignored;
  for (auto* socket : s_->connections) {
    socket->cancel(ignored);
  }
}

} // namespace tether::http
