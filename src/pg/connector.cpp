// The connector tether's pool opens PostgreSQL sessions with: a non-blocking connect through
// libpq's PQconnectPoll, the probe, and the reset of a returned session.
#include "tether/core/error.hpp"
#include "tether/pg/connection.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include "tidy.hpp"

namespace tether::pg {

using detail::tidy;

namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
using stream = asio::posix::stream_descriptor;

// What libpq's message says about why a connect failed, as an error code a caller can test.
std::error_code connect_error(const char* message) {
  const std::string_view m{message == nullptr ? "" : message};
  if (m.find("Connection refused") != std::string_view::npos) {
    return make_error_code(std::errc::connection_refused);
  }
  if (m.find("timeout expired") != std::string_view::npos) {
    return make_error_code(std::errc::timed_out);
  }
  // libpq does TLS itself (sslmode); its failures get tether's TLS codes, as the HTTP client's
  // do. libpq says only "certificate verify failed", not why: the message (last_error) has it.
  if (m.find("does not match host name") != std::string_view::npos) {
    return make_error_code(tether::errc::tls_hostname_mismatch);
  }
  if (m.find("certificate verify failed") != std::string_view::npos) {
    return make_error_code(tether::errc::tls_certificate_invalid);
  }
  if (m.find("SSL error") != std::string_view::npos ||
      m.find("does not support SSL") != std::string_view::npos) {
    return make_error_code(tether::errc::tls_handshake_failed);
  }
  return make_error_code(errc::connect_failed);
}

} // namespace

asio::awaitable<std::error_code> connector::async_connect(std::unique_ptr<pg::connection>& out) {
  using namespace asio::experimental::awaitable_operators;
  const auto executor = co_await asio::this_coro::executor;
  PGconn* conn = PQconnectStart(options_.conninfo.c_str());
  if (conn == nullptr) {
    co_return make_error_code(std::errc::not_enough_memory);
  }
  stream socket{executor};
  // Whatever way this coroutine ends short of success (an error, or its frame destroyed while
  // it waits), the half-made session is finished and libpq's socket is not closed under it.
  struct session_guard {
    PGconn* conn;
    stream& socket;
    ~session_guard() {
      if (socket.is_open()) {
        (void)socket.release();
      }
      if (conn != nullptr) {
        PQfinish(conn);
      }
    }
  } guard{conn, socket};
  const auto fail = [&](std::error_code ec) {
    last_error_ = tidy(PQerrorMessage(conn));
    return ec;
  };
  if (PQstatus(conn) == CONNECTION_BAD) {
    co_return fail(connect_error(PQerrorMessage(conn)));
  }
  asio::steady_timer deadline{executor, options_.connect_timeout};
  // libpq may move to another socket (another host or address), so follow PQsocket each round.
  PostgresPollingStatusType polling = PGRES_POLLING_WRITING;
  while (polling != PGRES_POLLING_OK) {
    if (polling == PGRES_POLLING_FAILED) {
      co_return fail(connect_error(PQerrorMessage(conn)));
    }
    // Register the socket afresh each round: libpq may have closed one socket and opened the
    // next under the same number (another address or host), which epoll would not notice.
    if (socket.is_open()) {
      (void)socket.release();
    }
    std::error_code assign_error;
    socket.assign(PQsocket(conn), assign_error);
    if (assign_error) {
      co_return fail(assign_error);
    }
    const auto what = polling == PGRES_POLLING_READING ? stream::wait_read : stream::wait_write;
    auto r = co_await (socket.async_wait(what, use_tuple) || deadline.async_wait(use_tuple));
    if (r.index() == 1) {
      co_return fail(make_error_code(std::errc::timed_out));
    }
    polling = PQconnectPoll(conn);
  }
  if (PQsetnonblocking(conn, 1) != 0) {
    co_return fail(make_error_code(errc::connect_failed));
  }
  out = std::make_unique<pg::connection>(conn, std::move(socket));
  guard.conn = nullptr; // the connection owns the session now
  co_return std::error_code{};
}

asio::awaitable<bool> connector::async_validate(pg::connection& c) {
  const auto r = co_await c.query("SELECT 1", {}, options_.probe_timeout);
  co_return !r.error;
}

connector::connector(connector_options options) : options_{std::move(options)} {
  // DISCARD ALL and DEALLOCATE drop the session's prepared statements, which execute must then
  // prepare again. (Were one of them only in a comment or a string of the query, the cost is a
  // needless prepare, answered 42P05 and run.)
  std::string lower = options_.reset_query;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (auto at = lower.find("discard"); at != std::string::npos && !reset_drops_prepared_;
       at = lower.find("discard", at + 1)) {
    const auto word = lower.find_first_not_of(" \t\r\n", at + 7);
    reset_drops_prepared_ = word != std::string::npos && lower.compare(word, 3, "all") == 0;
  }
  reset_drops_prepared_ = reset_drops_prepared_ || lower.find("deallocate") != std::string::npos;
}

asio::awaitable<bool> connector::async_reset(pg::connection& c) {
  if (c.in_transaction()) {
    const auto rolled_back = co_await c.query("ROLLBACK", {}, options_.probe_timeout);
    if (rolled_back.error) {
      last_error_ = "ROLLBACK of a returned session: " + rolled_back.message;
      co_return false;
    }
  }
  if (options_.reset_query.empty()) {
    co_return c.reusable();
  }
  const auto reset = co_await c.query(options_.reset_query, {}, options_.probe_timeout);
  if (reset.error) {
    last_error_ = "reset_query of a returned session: " + reset.message;
    co_return false;
  }
  if (reset_drops_prepared_) {
    c.forget_prepared();
  }
  co_return c.reusable();
}

} // namespace tether::pg
