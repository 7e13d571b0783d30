#include "tether/pg/connection.hpp"
#include "tether/core/detached.hpp"
#include "tether/core/error.hpp"

#include "tidy.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>

namespace tether::pg {

using detail::tidy;

namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
using stream = asio::posix::stream_descriptor;

class pg_category final : public std::error_category {
public:
  [[nodiscard]] const char* name() const noexcept override { return "tether.pg"; }
  [[nodiscard]] std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
    case errc::connect_failed:
      return "could not connect to PostgreSQL";
    case errc::query_failed:
      return "PostgreSQL reported an error for the query";
    case errc::query_timeout:
      return "query timed out and was cancelled on the server";
    case errc::connection_lost:
      return "connection to PostgreSQL lost during the query";
    case errc::busy:
      return "the connection is already running a query";
    case errc::transaction_rolled_back:
      return "the transaction was rolled back: a statement in it had failed";
    case errc::no_transaction:
      return "the transaction is not open";
    case errc::pipeline_aborted:
      return "not run: an earlier statement of its pipeline failed";
    }
    return "unknown tether.pg error " + std::to_string(value);
  }
};

// Clears a connection's busy mark when its query's coroutine ends, however it ends.
struct busy_flag {
  bool& flag;
  ~busy_flag() { flag = false; }
};

// PQcancel is a blocking network call (libpq 15 has no non-blocking cancel), so it runs on this
// small pool of its own, never on a worker.
asio::thread_pool& cancel_threads() {
  static asio::thread_pool pool{2};
  return pool;
}

asio::awaitable<void> send_cancel(std::shared_ptr<PGcancel> cancel) {
  char error[256];
  PQcancel(cancel.get(), error, sizeof error);
  co_return;
}

} // namespace

std::string detail::tidy(const char* message) {
  std::string out;
  std::string_view rest{message == nullptr ? "" : message};
  while (!rest.empty()) {
    const auto end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
    const bool continues = !line.empty() && (line.front() == '\t' || line.front() == ' ');
    bool space = false;
    bool started = false;
    for (const char c : line) {
      if (c == ' ' || c == '\t' || c == '\r') {
        space = started;
        continue;
      }
      if (!started && !out.empty()) {
        out += continues ? " " : "; ";
      } else if (space) {
        out += ' ';
      }
      out += c;
      space = false;
      started = true;
    }
  }
  return out;
}

const std::error_category& error_category() noexcept {
  static const pg_category category;
  return category;
}

connection::connection(PGconn* conn, stream socket) noexcept
    : conn_{conn}, socket_{std::move(socket)} {}

connection::~connection() {
  close();
}

void connection::close() noexcept {
  if (conn_ == nullptr) {
    return;
  }
  if (socket_.is_open()) {
    (void)socket_.release(); // libpq owns the descriptor
  }
  PQfinish(conn_);
  conn_ = nullptr;
  prepared_.clear(); // they lived on the server's session
}

bool connection::connected() const noexcept {
  return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK;
}

bool connection::in_transaction() const noexcept {
  if (conn_ == nullptr) {
    return false;
  }
  const auto status = PQtransactionStatus(conn_);
  return status == PQTRANS_INTRANS || status == PQTRANS_INERROR;
}

bool connection::resettable() noexcept {
  if (!connected() || in_query_ || PQtransactionStatus(conn_) == PQTRANS_ACTIVE) {
    return false;
  }
  // Just after a statement ended, the session was heard from: the pool's checks on return and on
  // the borrow that follows at once skip the syscall (HikariCP skips its validation for 500 ms
  // after a use; a backend ended inside the window fails its next query as connection_lost).
  if (coarse_monotonic_clock::instance().now() < heard_until_) {
    return true;
  }
  // An idle session has nothing to say: bytes (a terminated backend's FATAL error) or EOF mean
  // the server is done with it.
  char byte = 0;
  const auto n = ::recv(PQsocket(conn_), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

bool connection::reusable() noexcept {
  return resettable() && PQtransactionStatus(conn_) == PQTRANS_IDLE;
}

asio::awaitable<std::error_code> connection::wait(bool for_write, clock::time_point deadline) {
  using namespace asio::experimental::awaitable_operators;
  const auto what = for_write ? stream::wait_write : stream::wait_read;
  if (deadline == clock::time_point::max()) {
    auto [ec] = co_await socket_.async_wait(what, use_tuple);
    co_return ec;
  }
  asio::steady_timer timer{co_await asio::this_coro::executor};
  timer.expires_after(deadline - monotonic_clock::instance().now());
  auto r = co_await (socket_.async_wait(what, use_tuple) || timer.async_wait(use_tuple));
  if (r.index() == 1) {
    co_return make_error_code(std::errc::timed_out);
  }
  co_return std::get<0>(std::get<0>(r));
}

asio::awaitable<std::error_code> connection::wait_either(clock::time_point deadline) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer{co_await asio::this_coro::executor};
  timer.expires_after(deadline == clock::time_point::max()
                          ? std::chrono::hours{24 * 365}
                          : deadline - monotonic_clock::instance().now());
  auto r =
      co_await (socket_.async_wait(stream::wait_write, use_tuple) ||
                socket_.async_wait(stream::wait_read, use_tuple) || timer.async_wait(use_tuple));
  if (r.index() == 2) {
    co_return make_error_code(std::errc::timed_out);
  }
  co_return r.index() == 0 ? std::get<0>(std::get<0>(r)) : std::get<0>(std::get<1>(r));
}

asio::awaitable<void> connection::cancel_on_server() {
  // Sent without waiting for it: PQcancel has no timeout of its own, and the query's wait for
  // the server's answer is bounded separately. The PGcancel lives as long as the send needs it.
  std::shared_ptr<PGcancel> cancel{PQgetCancel(conn_), &PQfreeCancel};
  if (cancel) {
    asio::co_spawn(cancel_threads(), send_cancel(std::move(cancel)),
                   report_exceptions{"a PostgreSQL query's cancel request"});
  }
  co_return;
}

connection::sending::sending(kind k, const char* sql, std::span<const param> params)
    : what_{k}, text_{sql} {
  pack(params);
}

connection::sending::sending(kind k, const statement& st, std::span<const param> params)
    : what_{k}, text_{st.name.c_str()}, sql_{st.sql.c_str()} {
  pack(params);
}

void connection::sending::pack(std::span<const param> params) {
  count_ = static_cast<int>(params.size());
  std::size_t length = 0;
  for (const auto& p : params) {
    length += p ? p->size() + 1 : 0;
  }
  packed_.reserve(length);
  for (const auto& p : params) {
    if (p) {
      packed_.append(*p);
      packed_.push_back('\0');
    }
  }
  // Pointers only once the buffer holds everything: it does not move after this.
  if (params.size() > inline_params) {
    spilled_.resize(params.size());
  }
  const auto slots =
      spilled_.empty() ? std::span<const char*>{inline_} : std::span<const char*>{spilled_};
  const char* next = packed_.data();
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (params[i]) {
      slots[i] = next;
      next += params[i]->size() + 1;
    }
  }
}

int connection::send(const sending& s) {
  switch (s.what()) {
  case sending::kind::query:
    // Without parameters, the simple protocol: one message and one round trip, as psql and
    // pgbench's default mode send it. With parameters, the extended protocol keeps them out of
    // the SQL text.
    return s.count() == 0 ? PQsendQuery(conn_, s.text())
                          : PQsendQueryParams(conn_, s.text(), s.count(), nullptr, s.values(),
                                              nullptr, nullptr, 0);
  case sending::kind::prepare:
    return PQsendPrepare(conn_, s.text(), s.sql(), 0, nullptr);
  case sending::kind::run_prepared:
    return PQsendQueryPrepared(conn_, s.text(), s.count(), s.values(), nullptr, nullptr, 0);
  }
  return 0;
}

void connection::read_failure(query_outcome& out, PGresult* r, bool cancelled,
                              clock::duration timeout) {
  const auto field = [r](int code) {
    const char* text = PQresultErrorField(r, code);
    return text == nullptr ? std::string{} : std::string{text};
  };
  out.sqlstate = field(PG_DIAG_SQLSTATE);
  // The server's words, one field each; libpq's whole text ("ERROR:  ...\nDETAIL:  ...\n") only
  // when the error came from libpq itself and has no fields.
  out.message = field(PG_DIAG_MESSAGE_PRIMARY);
  if (out.message.empty()) {
    out.message = tidy(PQresultErrorMessage(r));
  }
  out.detail = field(PG_DIAG_MESSAGE_DETAIL);
  out.hint = field(PG_DIAG_MESSAGE_HINT);
  // 57014 is query_canceled: ours, if we cancelled.
  out.error = cancelled && out.sqlstate == "57014" ? make_error_code(errc::query_timeout)
                                                   : make_error_code(errc::query_failed);
  if (out.error == errc::query_timeout) {
    // Say what happened in tether's words, with the server's behind it.
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
    out.message = "query timed out after " + std::to_string(ms) +
                  " ms and was cancelled on the server (" + out.message + ")";
  }
}

bool connection::may_start(query_outcome& out) const {
  if (conn_ == nullptr) {
    out.error = errc::connection_lost;
    out.message = "connection closed";
    return false;
  }
  if (in_query_) {
    out.error = errc::busy;
    out.message = "the connection is already running a query";
    return false;
  }
  return true;
}

namespace {
clock::time_point deadline_after(clock::duration timeout) {
  return timeout > clock::duration::zero() ? monotonic_clock::instance().now() + timeout
                                           : clock::time_point::max();
}
} // namespace

asio::awaitable<query_outcome>
connection::query(std::string_view sql, std::span<const param> params, clock::duration timeout) {
  return perform(sql, nullptr, params, timeout);
}

asio::awaitable<query_outcome>
connection::execute(const statement& st, std::span<const param> params, clock::duration timeout) {
  return perform({}, &st, params, timeout);
}

// ---------------------------------------------------------------------------------------------
// Pipelines. perform() below keeps its own copy of the flush and wait loops: a query is the hot
// path, and there each helper would be a coroutine frame more per round trip.

asio::awaitable<bool> connection::flush(clock::time_point& deadline, bool& cancelled) {
  for (;;) {
    const int flushed = PQflush(conn_);
    if (flushed <= 0) {
      co_return flushed == 0;
    }
    const auto ec = co_await wait_either(deadline);
    if (ec && ec == std::errc::timed_out && !cancelled) {
      cancelled = true;
      deadline = monotonic_clock::instance().now() + std::chrono::seconds{5};
      co_await cancel_on_server();
    } else if (ec || PQconsumeInput(conn_) == 0) {
      co_return false;
    }
  }
}

asio::awaitable<bool> connection::await_result(clock::time_point& deadline, bool& cancelled) {
  while (PQisBusy(conn_) != 0) {
    const auto ec = co_await wait(false, deadline);
    if (ec && ec == std::errc::timed_out && !cancelled) {
      cancelled = true;
      deadline = monotonic_clock::instance().now() + std::chrono::seconds{5};
      co_await cancel_on_server();
      continue;
    }
    if (ec || PQconsumeInput(conn_) == 0) {
      co_return false;
    }
  }
  co_return true;
}

bool connection::send_pipeline(std::span<const pipelined> statements, std::vector<bool>& prepares) {
  if (PQenterPipelineMode(conn_) == 0) {
    return false;
  }
  std::vector<std::string_view> preparing; // in this pipeline, before it is answered
  for (std::size_t i = 0; i < statements.size(); ++i) {
    const auto& p = statements[i];
    if (p.prepared != nullptr) {
      // A statement new to this session is prepared in the same round trip, before its first
      // run in it.
      const std::string_view name = p.prepared->name;
      prepares[i] = !prepared_.contains(p.prepared->name) &&
                    std::find(preparing.begin(), preparing.end(), name) == preparing.end();
      if (prepares[i]) {
        preparing.push_back(name);
      }
      if (prepares[i] && PQsendPrepare(conn_, p.prepared->name.c_str(), p.prepared->sql.c_str(), 0,
                                       nullptr) == 0) {
        return false;
      }
      const sending run_it{sending::kind::run_prepared, *p.prepared, p.params};
      if (send(run_it) == 0) {
        return false;
      }
    } else {
      sql_text_.assign(p.sql); // sent before the next statement reuses it
      const sending one{sending::kind::query, sql_text_.c_str(), p.params};
      // Pipeline mode takes only the extended protocol: PQsendQueryParams, even without
      // parameters.
      const int sent = PQsendQueryParams(conn_, one.text(), one.count(), nullptr, one.values(),
                                         nullptr, nullptr, 0);
      forget_long_text(); // libpq has copied it
      if (sent == 0) {
        return false;
      }
    }
  }
  return PQpipelineSync(conn_) != 0;
}

asio::awaitable<std::vector<query_outcome>>
connection::pipeline(std::span<const pipelined> statements, clock::duration timeout) {
  std::vector<query_outcome> out(statements.size());
  const auto fail_all = [&](errc code, const std::string& message) {
    for (auto& o : out) {
      o = query_outcome{};
      o.error = code;
      o.message = message;
    }
  };
  if (statements.empty()) {
    co_return out;
  }
  query_outcome refused;
  if (!may_start(refused)) {
    fail_all(static_cast<errc>(refused.error.value()), refused.message);
    co_return out;
  }
  auto deadline = deadline_after(timeout);
  if (rollback_pending_ && in_transaction()) {
    // The abandoned transaction's ROLLBACK first (it clears rollback_pending_), in its own
    // round trip: pipeline mode would run it as part of the batch.
    const auto rolled = co_await query("ROLLBACK", {}, timeout);
    if (rolled.error) {
      fail_all(static_cast<errc>(rolled.error.value()), rolled.message);
      co_return out;
    }
  }
  rollback_pending_ = false;
  if (!may_start(refused)) { // closed while rolling back
    fail_all(static_cast<errc>(refused.error.value()), refused.message);
    co_return out;
  }
  in_query_ = true;
  const busy_flag busy{in_query_};
  std::vector<bool> prepares(statements.size(), false);
  bool cancelled = false;
  // Each co_await in a statement of its own: g++ 12 miscompiles one inside || or &&.
  bool sent = send_pipeline(statements, prepares);
  if (sent) {
    sent = co_await flush(deadline, cancelled);
  }
  if (!sent) {
    fail_all(errc::connection_lost, tidy(PQerrorMessage(conn_)));
    close();
    co_return out;
  }
  // The answers in order: for each statement its prepare's result (when it had one), then its
  // own; each followed by a null. Then the Sync's.
  for (std::size_t i = 0; i < statements.size(); ++i) {
    for (int part = prepares[i] ? 0 : 1; part < 2; ++part) {
      // Most answers of a pipeline come in the same reads as the first: a wait (a coroutine
      // frame) only when libpq has not got the whole of this one yet.
      bool answered = true;
      if (PQisBusy(conn_) != 0) {
        answered = co_await await_result(deadline, cancelled);
      }
      if (!answered) {
        fail_all(errc::connection_lost, cancelled ? "no answer after cancelling the pipeline"
                                                  : tidy(PQerrorMessage(conn_)));
        close();
        co_return out;
      }
      PGresult* r = PQgetResult(conn_);
      const auto status = PQresultStatus(r);
      if (status == PGRES_PIPELINE_ABORTED) {
        if (!out[i].error) {
          out[i].error = errc::pipeline_aborted;
          out[i].message = "not run: an earlier statement of the pipeline failed";
        }
        PQclear(r);
      } else if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE) {
        if (!out[i].error) {
          read_failure(out[i], r, cancelled, timeout);
        }
        PQclear(r);
      } else if (part == 0) {
        prepared_.insert(statements[i].prepared->name);
        PQclear(r);
      } else if (!out[i].error) {
        out[i].rows = result{r};
      } else {
        PQclear(r);
      }
      // The null that ends this statement's results.
      bool ended = true;
      if (PQisBusy(conn_) != 0) {
        ended = co_await await_result(deadline, cancelled);
      }
      if (!ended) {
        fail_all(errc::connection_lost, tidy(PQerrorMessage(conn_)));
        close();
        co_return out;
      }
      if (PGresult* extra = PQgetResult(conn_); extra != nullptr) {
        PQclear(extra); // not expected of one statement; dropped rather than misread
      }
    }
  }
  bool sync_came = true;
  if (PQisBusy(conn_) != 0) {
    sync_came = co_await await_result(deadline, cancelled);
  }
  if (!sync_came) {
    fail_all(errc::connection_lost, tidy(PQerrorMessage(conn_)));
    close();
    co_return out;
  }
  PGresult* sync_result = PQgetResult(conn_);
  const bool synced = PQresultStatus(sync_result) == PGRES_PIPELINE_SYNC;
  PQclear(sync_result);
  if (!synced || PQexitPipelineMode(conn_) == 0) {
    fail_all(errc::connection_lost, "the pipeline did not end in step with the server");
    close();
    co_return out;
  }
  heard_until_ = coarse_monotonic_clock::instance().now() + heard_window;
  co_return out;
}

// libpq's PQsend* for a query's SQL or a prepared statement's run. Apart from perform() so that
// the sending is on the stack, not in its frame (libpq has copied it all when this returns).
int connection::send_statement(const statement* st, std::span<const param> params) {
  if (st != nullptr) {
    return send(sending{sending::kind::run_prepared, *st, params});
  }
  const int sent = send(sending{sending::kind::query, sql_text_.c_str(), params});
  forget_long_text();
  return sent;
}

void connection::forget_long_text() noexcept {
  // The buffer keeps its capacity so that a query allocates nothing for its text, up to a
  // point: one huge statement does not hold its size for the session's life.
  constexpr std::size_t kept = 64 * 1024;
  if (sql_text_.capacity() > kept) {
    sql_text_ = std::string{};
  }
}

// Every round trip of one query or execute, in one coroutine (a frame more per statement costs
// as much as libpq's own work for it): the ROLLBACK of a transaction a pg::transaction
// abandoned, the prepare of a statement new to the session, the statement, and once more after
// preparing again when the server had lost the statement. The frame stays under the 1 KiB that
// Asio recycles (a larger one is allocated for every call): the steps before the statement's
// own keep their outcome on the heap, and what is sent is built outside it.
asio::awaitable<query_outcome> connection::perform(std::string_view sql, const statement* st,
                                                   std::span<const param> params,
                                                   clock::duration timeout) {
  query_outcome out;
  if (!may_start(out)) {
    co_return out;
  }
  in_query_ = true;
  const busy_flag busy{in_query_};
  // The timeout covers every step; a cancel's grace for the server's answer stays in its step.
  const auto end = deadline_after(timeout);
  if (st == nullptr) {
    // Copied before the first suspension: the caller's text need not outlive a ROLLBACK first.
    sql_text_.assign(sql);
  }
  if (st == nullptr && sql == "ROLLBACK") {
    rollback_pending_ = false; // the statement is the rollback (the pool's reset, say)
  }
  enum class step : std::uint8_t { roll_back, prepare, statement };
  const auto after_rollback = [&] {
    return st != nullptr && !prepared_.contains(st->name) ? step::prepare : step::statement;
  };
  step next = rollback_pending_ && in_transaction() ? step::roll_back : after_rollback();
  rollback_pending_ = false;
  bool prepared_again = false;
  std::unique_ptr<query_outcome> side; // a ROLLBACK's or a prepare's outcome, when there is one

  const auto lost = [&](query_outcome& o) {
    o.error = errc::connection_lost;
    o.message = tidy(PQerrorMessage(conn_));
  };
  for (;;) {
    if (next != step::statement) {
      side = std::make_unique<query_outcome>();
    }
    query_outcome& got = next == step::statement ? out : *side;
    const int sent = next == step::roll_back ? send(sending{sending::kind::query, "ROLLBACK", {}})
                     : next == step::prepare ? send(sending{sending::kind::prepare, *st, {}})
                                             : send_statement(st, params);
    if (sent == 0) {
      lost(got);
      break;
    }

    auto deadline = end;
    bool cancelled = false;
    // After a cancel, the server still has to answer; give it a bounded time to.
    const auto after_cancel = [&] {
      cancelled = true;
      deadline = monotonic_clock::instance().now() + std::chrono::seconds{5};
    };
    bool broken = false;
    for (;;) {
      const int flushed = PQflush(conn_);
      if (flushed == 0) {
        break;
      }
      if (flushed < 0) {
        broken = true;
        break;
      }
      // libpq: while output is pending, wait for either direction, and read what arrives so
      // the server is never blocked writing to us while we wait to write to it.
      const auto ec = co_await wait_either(deadline);
      if (ec && ec == std::errc::timed_out && !cancelled) {
        after_cancel();
        co_await cancel_on_server();
      } else if (ec || PQconsumeInput(conn_) == 0) {
        broken = true;
        break;
      }
    }
    if (broken) {
      lost(got);
      break;
    }

    for (;;) {
      while (PQisBusy(conn_) != 0) {
        // Without a deadline, the socket's wait itself, not a coroutine around it: one frame
        // fewer per round trip.
        std::error_code ec;
        if (deadline == clock::time_point::max()) {
          std::tie(ec) = co_await socket_.async_wait(stream::wait_read, use_tuple);
        } else {
          ec = co_await wait(false, deadline);
        }
        // (`ec &&` first: comparing with an errc goes through the categories' virtual calls,
        // and this runs once per round trip.)
        if (ec && ec == std::errc::timed_out && !cancelled) {
          after_cancel();
          co_await cancel_on_server();
          continue;
        }
        if (ec || PQconsumeInput(conn_) == 0) {
          lost(got);
          if (ec) {
            got.message = cancelled ? "no answer after cancelling the query" : ec.message();
          }
          broken = true;
          break;
        }
      }
      if (broken) {
        break;
      }
      PGresult* r = PQgetResult(conn_);
      if (r == nullptr) {
        break;
      }
      const auto status = PQresultStatus(r);
      if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
        // COPY needs a streaming API tether does not have yet. libpq would hand out a COPY
        // result for ever; end it: refuse the data for COPY FROM, drop the session for COPY TO.
        PQclear(r);
        got.error = errc::query_failed;
        got.message = "COPY is not supported by tether::pg::connection::query";
        if (status == PGRES_COPY_IN && PQputCopyEnd(conn_, "COPY is not supported") == 1) {
          continue; // the server answers with an error, then the session is idle again
        }
        close();
        co_return std::move(got);
      }
      if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE ||
          status == PGRES_NONFATAL_ERROR) {
        if (!got.error) {
          read_failure(got, r, cancelled, timeout);
        }
        PQclear(r);
      } else if (!got.error) {
        got.rows = result{r};
      } else {
        PQclear(r);
      }
    }
    if (broken) {
      break;
    }
    if (!connected()) {
      lost(got);
      break;
    }
    heard_until_ = coarse_monotonic_clock::instance().now() + heard_window;

    // What comes after this step.
    if (next == step::roll_back) {
      if (side->error) {
        co_return std::move(*side);
      }
      next = after_rollback();
    } else if (next == step::prepare) {
      // 42P05 (duplicate_prepared_statement): the session has it already, prepared before
      // tether forgot it. Outside a transaction, run it; inside, the error has aborted it.
      if (side->error && (side->sqlstate != "42P05" || in_transaction())) {
        co_return std::move(*side);
      }
      prepared_.insert(st->name);
      next = step::statement;
    } else {
      // 26000 (invalid_sql_statement_name): the session no longer has the statement, and the
      // server ran nothing. Prepare it again, once, unless a transaction is open: the error
      // has aborted it, and the caller must know.
      const bool statement_lost =
          st != nullptr && out.error && out.error == errc::query_failed && out.sqlstate == "26000";
      if (!statement_lost) {
        co_return out;
      }
      prepared_.erase(st->name);
      if (prepared_again || PQtransactionStatus(conn_) != PQTRANS_IDLE) {
        co_return out;
      }
      prepared_again = true;
      out = query_outcome{};
      next = step::prepare;
    }
  }
  // The session broke during a step: what that step says is the outcome.
  co_return next == step::statement ? std::move(out) : std::move(*side);
}

} // namespace tether::pg
