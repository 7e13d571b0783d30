#pragma once

#include <array>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <libpq-fe.h>

#include "tether/core/clock.hpp"
#include "tether/pg/error.hpp"
#include "tether/pg/result.hpp"

namespace tether::pg {

using namespace std::chrono_literals;

/// A query parameter in libpq's text format; std::nullopt is SQL NULL.
using param = std::optional<std::string_view>;

/// A statement prepared once per session and run by name after that (connection::execute).
/// The name is the server's, unique per session: give each SQL text its own name.
struct statement {
  std::string name;
  std::string sql;
};

/// One statement of a pipeline (connection::pipeline): SQL run through the extended protocol,
/// or a prepared statement (prepared in the same round trip on its first use on the session).
struct pipelined {
  std::string_view sql{};
  const statement* prepared = nullptr; ///< when set, `sql` is not used
  std::span<const param> params{};
};

/// One PostgreSQL session driven by libpq in non-blocking mode on Asio: connecting, sending and
/// reading never block the thread; the coroutine waits on the socket instead.
class connection {
public:
  connection(PGconn* conn, asio::posix::stream_descriptor socket) noexcept;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection();

  /// Runs one statement: with parameters ($1, $2, ...) through the extended protocol, without
  /// through the simple one (which also takes several statements separated by ';'). With a
  /// timeout, a query still running when it passes is cancelled on the server (PQcancel, run off
  /// the loop thread) and ends with errc::query_timeout.
  ///
  /// Pass the parameters as a named array or vector (`const pg::param args[] = {"42"};`): g++ 12
  /// miscompiles a braced list used directly in a co_await expression. The SQL is copied when
  /// the query starts; the parameters are read when they are sent, so they must live until the
  /// query ends (as they do in `co_await c.query(sql, args)`).
  asio::awaitable<query_outcome> query(std::string_view sql, std::span<const param> params = {},
                                       clock::duration timeout = clock::duration::zero());

  /// Runs a prepared statement: on its first use on this session it is prepared (Parse, one round
  /// trip, types inferred by the server), and from then on it runs by name (Bind and Execute),
  /// so the server plans it once per session rather than once per query. A session that lost
  /// the statement (DISCARD ALL, DEALLOCATE, a pooler in front of the server) prepares it again
  /// and runs it once more: the server refused it without running it. The timeout covers the
  /// prepare and the run together. The parameters must live until it ends.
  asio::awaitable<query_outcome> execute(const statement& s, std::span<const param> params = {},
                                         clock::duration timeout = clock::duration::zero());

  /// Runs `statements` in one round trip with libpq's pipeline mode (PostgreSQL 14+): all of
  /// them are sent, then one Sync, and their answers are read back in order, one outcome each.
  /// Outside a transaction block they run in one implicit transaction: when one fails, those
  /// before it are rolled back and those after it are not run (errc::pipeline_aborted). A
  /// batch of independent reads costs one round trip instead of one each. The timeout covers
  /// the whole pipeline (errc::query_timeout, cancelled on the server).
  asio::awaitable<std::vector<query_outcome>>
  pipeline(std::span<const pipelined> statements,
           clock::duration timeout = clock::duration::zero());

  /// BEGIN / COMMIT / ROLLBACK as plain statements; pg::transaction wraps them and rolls back a
  /// transaction it drops. A lease that comes back with a transaction open is rolled back by
  /// the pool before the session is pooled again.
  asio::awaitable<query_outcome> begin() { return query("BEGIN"); }
  asio::awaitable<query_outcome> commit() { return query("COMMIT"); }
  asio::awaitable<query_outcome> rollback() { return query("ROLLBACK"); }

  /// True when the session is connected, idle (no transaction, no query) and its socket shows
  /// nothing unexpected (a terminated backend sends an error and closes).
  [[nodiscard]] bool reusable() noexcept;
  /// Like reusable(), but a transaction may be open (a ROLLBACK makes the session reusable).
  [[nodiscard]] bool resettable() noexcept;
  /// True inside a transaction block, failed or not.
  [[nodiscard]] bool in_transaction() const noexcept;
  /// A pg::transaction dropped while open: the session's next query or execute first rolls it
  /// back, so nothing runs inside a transaction its owner gave up.
  void abandon_transaction() noexcept { rollback_pending_ = true; }
  /// True while connected (not necessarily idle).
  [[nodiscard]] bool connected() const noexcept;
  /// The backend's process id (for pg_terminate_backend in tests and logs).
  [[nodiscard]] int backend_pid() const noexcept { return PQbackendPID(conn_); }
  [[nodiscard]] PGconn* native_handle() const noexcept { return conn_; }

  /// True when this session has prepared the statement named `name` (through execute).
  [[nodiscard]] bool is_prepared(std::string_view name) const noexcept {
    return prepared_.contains(std::string{name});
  }
  /// Forgets the statements prepared: the server dropped them (DISCARD ALL, DEALLOCATE ALL).
  void forget_prepared() noexcept { prepared_.clear(); }

  /// Closes the session now.
  void close() noexcept;

private:
  // What one round trip sends: the simple or extended query, a prepare, or a prepared
  // statement's run, NUL-terminated as libpq wants it, built just before it is sent (libpq
  // copies it all then): a query's SQL is in the session's sql_text_, and a statement's name
  // and SQL are read from the statement, which outlives the call. Parameters are packed into one
  // buffer, and up to `inline_params` pointers to them are kept in place, so a run of a prepared
  // statement with a few short parameters allocates nothing.
  class sending {
  public:
    enum class kind { query, prepare, run_prepared };
    // `sql` is NUL-terminated and outlives the sending.
    sending(kind k, const char* sql, std::span<const param> params);
    sending(kind k, const statement& st, std::span<const param> params);
    sending(const sending&) = delete; // `values_` points into `packed_`
    sending& operator=(const sending&) = delete;

    [[nodiscard]] kind what() const noexcept { return what_; }
    [[nodiscard]] const char* text() const noexcept { return text_; }
    [[nodiscard]] const char* sql() const noexcept { return sql_; }
    [[nodiscard]] int count() const noexcept { return count_; }
    [[nodiscard]] const char* const* values() const noexcept {
      return spilled_.empty() ? inline_.data() : spilled_.data();
    }

  private:
    void pack(std::span<const param> params);

    static constexpr std::size_t inline_params = 8;
    kind what_;
    const char* text_ = nullptr; // the SQL (query) or the statement's name
    const char* sql_ = nullptr;  // the statement's SQL (prepare)
    std::string packed_;         // each parameter followed by a NUL
    int count_ = 0;
    std::array<const char*, inline_params> inline_{}; // into `packed_`; nullptr for NULL
    std::vector<const char*> spilled_;                // the same, beyond inline_params
  };
  // Sends a pipeline (everything, then a Sync); false when the session broke.
  bool send_pipeline(std::span<const pipelined> statements, std::vector<bool>& prepares);
  // Waits until a whole result can be taken (PQisBusy is false), cancelling on the server when
  // `deadline` passes; false when the session broke or did not answer the cancel.
  asio::awaitable<bool> await_result(clock::time_point& deadline, bool& cancelled);
  // Flushes what libpq holds to send, reading meanwhile; false when the session broke.
  asio::awaitable<bool> flush(clock::time_point& deadline, bool& cancelled);
  // One query or execute: `sql` for a query, `st` for a prepared statement's run.
  asio::awaitable<query_outcome> perform(std::string_view sql, const statement* st,
                                         std::span<const param> params, clock::duration timeout);
  // libpq's PQsend* for the query in sql_text_ or a prepared statement's run (`st`): 0 on
  // failure.
  int send_statement(const statement* st, std::span<const param> params);
  // Drops sql_text_'s buffer when one statement made it large.
  void forget_long_text() noexcept;
  // libpq's PQsend* for `s`: 0 on failure.
  int send(const sending& s);
  // Refuses a query on a closed or busy session; true when one may start.
  bool may_start(query_outcome& out) const;
  asio::awaitable<std::error_code> wait(bool for_write, clock::time_point deadline);
  asio::awaitable<std::error_code> wait_either(clock::time_point deadline);
  asio::awaitable<void> cancel_on_server();
  // Fills `out` from an error result: SQLSTATE, the server's message, and query_timeout when it
  // is the cancel of a query that ran past `timeout`.
  static void read_failure(query_outcome& out, PGresult* r, bool cancelled,
                           clock::duration timeout);

  PGconn* conn_;
  asio::posix::stream_descriptor socket_; // libpq's socket, not owned: released before PQfinish
  bool in_query_ = false;
  bool rollback_pending_ = false; // a pg::transaction was dropped open
  // Until when the session counts as heard from (a statement just ended on it), on the coarse
  // clock: resettable() skips its recv(MSG_PEEK) before then.
  static constexpr clock::duration heard_window = std::chrono::milliseconds{5};
  clock::time_point heard_until_{};
  // Names of the statements prepared on this session, by execute.
  std::unordered_set<std::string> prepared_;
  // The text of the query being sent, NUL-terminated for libpq (its capacity kept).
  std::string sql_text_;
};

/// Settings of a connector.
struct connector_options {
  /// A libpq connection string ("host=... dbname=..." or a postgresql:// URI). Empty: libpq's
  /// defaults and the PG* environment variables (PGHOST, PGPORT, PGUSER, PGDATABASE, ...).
  std::string conninfo;
  clock::duration connect_timeout = 10s;
  /// How long the pool's keepalive and validation probe (SELECT 1), and its reset of a
  /// returned session, may take.
  clock::duration probe_timeout = 5s;
  /// Run on every session that comes back to the pool, before anyone else gets it, as
  /// PgBouncer's server_reset_query: "DISCARD ALL" drops a lease's SET, temporary tables,
  /// prepared statements, LISTENs and advisory locks. Empty (the default): nothing is run, and
  /// a returned session costs no round trip. A transaction left open is rolled back either way.
  std::string reset_query = {};
};

/// Opens PostgreSQL sessions for tether's pool (connection_pool<pg::connector>).
class connector {
public:
  using connection_type = pg::connection;

  explicit connector(connector_options options = {});

  asio::awaitable<std::error_code> async_connect(std::unique_ptr<pg::connection>& out);
  /// SELECT 1 within probe_timeout.
  asio::awaitable<bool> async_validate(pg::connection& c);
  [[nodiscard]] bool is_usable(pg::connection& c) noexcept { return c.reusable(); }
  /// Checked when a lease comes back: a session broken mid-query is closed instead of pooled.
  [[nodiscard]] bool is_reusable(pg::connection& c) noexcept { return c.resettable(); }
  /// A session that comes back inside a transaction, or any session when there is a
  /// reset_query, is reset before it is pooled again.
  [[nodiscard]] bool needs_reset(pg::connection& c) const noexcept {
    return c.in_transaction() || !options_.reset_query.empty();
  }
  /// ROLLBACK if a transaction is open, then the reset_query, each within probe_timeout.
  asio::awaitable<bool> async_reset(pg::connection& c);
  void close(pg::connection& c) noexcept { c.close(); }

  /// The last connect error's text from libpq (for logs).
  [[nodiscard]] const std::string& last_error() const noexcept { return last_error_; }

private:
  connector_options options_;
  bool reset_drops_prepared_ = false; // the reset_query drops prepared statements
  std::string last_error_;
};

} // namespace tether::pg
