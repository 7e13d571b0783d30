#include "tether/http/connection.hpp"
#include "tether/http/proxy.hpp"

#include <memory>
#include <string>
#include <variant>

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include "tether/core/error.hpp"

#include "exchange.hpp"

namespace tether::http {

using detail::use_tuple;

http_connector::http_connector(std::string host, std::uint16_t port, const net::tcp_options& tcp,
                               const parser_limits& limits, std::optional<tls::client_identity> tls,
                               std::optional<proxy_route> proxy)
    : tcp_{proxy ? proxy->host : host, proxy ? proxy->port : port, tcp}, limits_{limits},
      tls_{std::move(tls)}, proxy_{std::move(proxy)}, connect_timeout_{tcp.connect_timeout} {
  if (proxy_ && tls_) {
    std::string authority = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    authority.append(":").append(std::to_string(port));
    connect_request_ = "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n";
    if (!proxy_->authorization.empty()) {
      connect_request_ += "Proxy-Authorization: " + proxy_->authorization + "\r\n";
    }
    connect_request_ += "\r\n";
  }
}

asio::awaitable<std::error_code> http_connector::open_tunnel(asio::ip::tcp::socket& socket) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer deadline{
      socket.get_executor(),
      std::chrono::duration_cast<asio::steady_timer::duration>(connect_timeout_)};
  auto written = co_await (asio::async_write(socket, asio::buffer(connect_request_), use_tuple) ||
                           deadline.async_wait(use_tuple));
  if (written.index() == 1) {
    co_return make_error_code(std::errc::timed_out);
  }
  if (auto [ec, n] = std::get<0>(written); ec) {
    co_return ec;
  }
  // The proxy's answer, up to its blank line. A 2xx has no body (RFC 9110 9.3.6), and nothing
  // else comes before the TLS handshake we start: bytes past the head are a broken proxy.
  std::string head;
  auto read = co_await (asio::async_read_until(socket, asio::dynamic_buffer(head, 16 * 1024),
                                               "\r\n\r\n", use_tuple) ||
                        deadline.async_wait(use_tuple));
  if (read.index() == 1) {
    co_return make_error_code(std::errc::timed_out);
  }
  auto [ec, n] = std::get<0>(read);
  if (ec) {
    co_return ec == asio::error::not_found ? make_error_code(tether::errc::proxy_refused) : ec;
  }
  const auto status = connect_reply_status(head);
  if (status == 407) {
    co_return make_error_code(tether::errc::proxy_authentication_required);
  }
  if (!status || *status < 200 || *status > 299 || n != head.size()) {
    co_return make_error_code(tether::errc::proxy_refused);
  }
  co_return std::error_code{};
}

asio::awaitable<std::error_code>
http_connector::async_connect(std::unique_ptr<http_connection>& out) {
  resilience::resource_guard slot;
  if (limit_ != nullptr) {
    slot = resilience::resource_guard{*limit_};
    if (!slot) {
      co_return make_error_code(tether::errc::overloaded);
    }
  }
  std::unique_ptr<net::tcp_connection> tcp;
  const std::error_code ec = co_await tcp_.async_connect(tcp);
  if (ec) {
    co_return ec;
  }
  if (!connect_request_.empty()) {
    if (const auto refused = co_await open_tunnel(tcp->socket); refused) {
      co_return refused;
    }
  }
  if (tls_) {
    auto secured = tls_->open(std::move(tcp->socket));
    if (const auto failed = co_await tls_->async_handshake(secured); failed) {
      co_return failed;
    }
    out = std::make_unique<http_connection>(std::move(secured), limits_);
  } else {
    out = std::make_unique<http_connection>(tls::stream{std::move(tcp->socket)}, limits_);
  }
  out->slot = std::move(slot);
  ++opened_;
  co_return std::error_code{};
}

asio::awaitable<bool> http_connector::async_validate(http_connection& c) {
  co_return is_usable(c);
}

} // namespace tether::http
