// tether's PostgreSQL pool against a real server (Debian's, started by the test on a private
// directory and port): queries, limits, acquire timeout, leak report, transactions dropped
// mid-way, query cancel on timeout, a killed backend, and a server restart mid-run.
#include "tether/pg/pool.hpp"

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <cmath>
#include <memory>
#include <optional>

#include "pg_server.hpp"

namespace tether::pg {
namespace {

using namespace std::chrono_literals;
using testing::pg_server;

pg_server* server = nullptr;

// One server for the whole file: initdb takes a second or two.
class pg_environment : public ::testing::Environment {
public:
  void SetUp() override {
    if (!pg_server::find_binaries()) {
      return;
    }
    server = new pg_server;
  }
  void TearDown() override {
    delete server;
    server = nullptr;
  }
};
const auto* const environment = ::testing::AddGlobalTestEnvironment(new pg_environment);

template <class P>
bool run_until(asio::io_context& io, P done, std::chrono::milliseconds bound = 10000ms) {
  const auto give_up = std::chrono::steady_clock::now() + bound;
  while (!done() && std::chrono::steady_clock::now() < give_up) {
    io.restart();
    io.run_for(2ms);
  }
  return done();
}

struct recording_observer : tether::pool::pool_observer {
  std::vector<tether::pool::close_reason> closed;
  int leaks = 0;
  std::uint_least32_t leak_line = 0;
  void on_closed(tether::pool::close_reason r) override { closed.push_back(r); }
  void on_leak(const std::source_location& at, clock::duration) override {
    ++leaks;
    leak_line = at.line();
  }
};

struct pg_test : ::testing::Test {
  std::shared_ptr<recording_observer> observer = std::make_shared<recording_observer>();
  tether::pool::pool_options options;
  asio::io_context io;

  void SetUp() override {
    if (server == nullptr) {
      GTEST_SKIP() << "PostgreSQL is not installed (scripts/setup.sh installs it)";
    }
    options.min_idle = 0;
  }

  std::shared_ptr<pool> make() {
    auto p = pool::create(io.get_executor(), connector{{server->conninfo()}}, options,
                          coarse_monotonic_clock::instance(), observer);
    p->start();
    return p;
  }

  // Runs a coroutine body to completion (bounded) and returns its result.
  template <class T>
  T run(asio::awaitable<T> body, std::chrono::milliseconds bound = 10000ms) {
    auto slot = std::make_shared<std::optional<T>>();
    asio::co_spawn(io, store(std::move(body), slot), asio::detached);
    EXPECT_TRUE(run_until(
        io, [&] { return slot->has_value(); }, bound));
    return std::move(slot->value());
  }

  template <class T>
  static asio::awaitable<void> store(asio::awaitable<T> body,
                                     std::shared_ptr<std::optional<T>> slot) {
    *slot = co_await std::move(body);
  }
};

asio::awaitable<query_outcome> one_query(std::shared_ptr<pool> p, std::string sql,
                                         std::vector<std::string> args,
                                         clock::duration timeout = 0s) {
  auto lease = co_await p->async_acquire();
  if (lease.error) {
    query_outcome out;
    out.error = lease.error;
    co_return out;
  }
  std::vector<param> params(args.begin(), args.end());
  co_return co_await lease.connection->query(sql, params, timeout);
}

TEST_F(pg_test, runs_parameterised_queries_and_reports_server_errors) {
  auto p = make();
  auto sum = run(one_query(p, "SELECT $1::int + $2::int AS total", {"2", "3"}));
  ASSERT_FALSE(sum.error) << sum.message;
  EXPECT_EQ(sum.rows.rows(), 1);
  EXPECT_EQ(sum.rows.get(0, 0), "5");
  EXPECT_EQ(sum.rows.column_name(0), "total");

  auto bad = run(one_query(p, "SELECT 1 / $1::int", {"0"}));
  EXPECT_EQ(bad.error, make_error_code(errc::query_failed));
  EXPECT_EQ(bad.sqlstate, "22012"); // division_by_zero
  EXPECT_EQ(bad.message, "division by zero") << "the server's primary message, on its own";

  auto null_param = run([](std::shared_ptr<pool> pl) -> asio::awaitable<query_outcome> {
    auto lease = co_await pl->async_acquire();
    const param args[] = {std::nullopt};
    co_return co_await lease.connection->query("SELECT $1::text IS NULL", args);
  }(p));
  ASSERT_FALSE(null_param.error);
  EXPECT_EQ(null_param.rows.get(0, 0), "t");
  EXPECT_EQ(p->stats().total, 1U) << "the three queries shared one session";
}

TEST_F(pg_test, every_parameter_reaches_the_server_in_its_place_however_many_there_are) {
  // Up to eight parameters are kept in place and more spill to the heap: both, with NULLs,
  // empty strings and long values among them, and through query and execute alike.
  auto p = make();
  const std::string long_value(300, 'x');
  auto out = run([&](std::shared_ptr<pool> pl) -> asio::awaitable<std::vector<query_outcome>> {
    auto lease = co_await pl->async_acquire();
    std::vector<query_outcome> got;
    const param few[] = {"a", std::nullopt, ""};
    got.push_back(co_await lease.connection->query(
        "SELECT concat_ws('|', $1::text, coalesce($2::text, 'NULL'), $3::text, 'end')", few));
    const param many[] = {"1", "2", std::nullopt, "4", "", long_value, "7", "8", "9", "10", "11"};
    const std::string sql = "SELECT concat_ws('|', $1::text, $2::text, coalesce($3::text, 'NULL'), "
                            "$4::text, $5::text, length($6::text), $7::text, $8::text, $9::text, "
                            "$10::text, $11::text)";
    got.push_back(co_await lease.connection->query(sql, many));
    const statement st{"tether_test_many", sql};
    got.push_back(co_await lease.connection->execute(st, many));
    co_return got;
  }(p));
  ASSERT_EQ(out.size(), 3U);
  ASSERT_FALSE(out[0].error) << out[0].message;
  EXPECT_EQ(out[0].rows.get(0, 0), "a|NULL||end");
  for (std::size_t i = 1; i < 3; ++i) {
    ASSERT_FALSE(out[i].error) << out[i].message;
    EXPECT_EQ(out[i].rows.get(0, 0), "1|2|NULL|4||300|7|8|9|10|11");
  }
}

TEST_F(pg_test, a_server_error_comes_as_message_detail_hint_and_sqlstate) {
  auto p = make();
  auto raised = run(one_query(p,
                              "DO $$ BEGIN RAISE EXCEPTION 'order % is closed', 7 USING "
                              "DETAIL = 'closed at noon', HINT = 'reopen it first', "
                              "ERRCODE = '22023'; END $$",
                              {}));
  EXPECT_EQ(raised.error, make_error_code(errc::query_failed));
  EXPECT_EQ(raised.message, "order 7 is closed");
  EXPECT_EQ(raised.detail, "closed at noon");
  EXPECT_EQ(raised.hint, "reopen it first");
  EXPECT_EQ(raised.sqlstate, "22023");

  ASSERT_TRUE(run(one_query(p, "CREATE TABLE IF NOT EXISTS t_unique (id int PRIMARY KEY)", {})));
  ASSERT_TRUE(run(one_query(p, "INSERT INTO t_unique VALUES (1) ON CONFLICT DO NOTHING", {})));
  auto twice = run(one_query(p, "INSERT INTO t_unique VALUES ($1::int)", {"1"}));
  EXPECT_EQ(twice.sqlstate, "23505"); // unique_violation
  EXPECT_EQ(twice.message, "duplicate key value violates unique constraint \"t_unique_pkey\"");
  EXPECT_EQ(twice.detail, "Key (id)=(1) already exists.");
  EXPECT_EQ(twice.hint, "");
}

TEST_F(pg_test, reads_values_as_typed_cpp_values) {
  auto p = make();
  auto r = run(one_query(
      p,
      "SELECT 42::int2 AS small, 2147483647::int4 AS big, (-9223372036854775807 - 1)::int8 AS "
      "huge, 0.25::float4 AS quarter, 'NaN'::float8 AS nan, 123.4500::numeric AS price, true AS "
      "yes, 'hé'::text AS word, '\\xdeadbeef'::bytea AS blob, "
      "'2024-02-29 23:59:59.5+05:30'::timestamptz AS stamp, '2024-01-02'::date AS day, "
      "'infinity'::timestamp AS never, NULL::int AS nothing",
      {}));
  ASSERT_FALSE(r.error) << r.message;
  const auto& rows = r.rows;
  EXPECT_EQ(rows.value<std::int16_t>(0, "small"), 42);
  EXPECT_EQ(rows.value<std::int32_t>(0, "big"), 2147483647);
  EXPECT_EQ(rows.value<std::int64_t>(0, "huge"), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(rows.value<float>(0, "quarter"), 0.25F);
  EXPECT_TRUE(std::isnan(rows.value<double>(0, "nan")));
  EXPECT_EQ(rows.value<double>(0, "price"), 123.45);
  EXPECT_TRUE(rows.value<bool>(0, "yes"));
  EXPECT_EQ(rows.value<std::string>(0, "word"), "hé");
  EXPECT_EQ(rows.value<bytes>(0, "blob"), (bytes{0xde, 0xad, 0xbe, 0xef}));
  using namespace std::chrono;
  EXPECT_EQ(rows.value<timestamp>(0, "stamp"),
            timestamp{sys_days{2024y / 2 / 29}} + 18h + 29min + 59s + 500ms)
      << "whatever the session's TimeZone, the instant is the same";
  EXPECT_EQ(rows.value<timestamp>(0, "day"), timestamp{sys_days{2024y / 1 / 2}});
  EXPECT_EQ(rows.value<timestamp>(0, "never"), timestamp::max());
  EXPECT_EQ(rows.value<std::optional<std::int32_t>>(0, "nothing"), std::nullopt);
  EXPECT_EQ(rows.value<std::optional<std::int32_t>>(0, "big"), 2147483647);

  const auto refused = [&](auto read) -> std::string {
    try {
      read();
    } catch (const conversion_error& e) {
      return e.what();
    }
    return "no conversion_error";
  };
  EXPECT_EQ(refused([&] { (void)rows.value<std::int32_t>(0, "nothing"); }),
            "column \"nothing\" (12), row 0: NULL (read it as std::optional<int32>) cannot be "
            "read as int32");
  EXPECT_EQ(refused([&] { (void)rows.value<std::int16_t>(0, "big"); }),
            "column \"big\" (1), row 0: '2147483647' cannot be read as int16");
  EXPECT_EQ(refused([&] { (void)rows.value<std::int32_t>(1, 0); }),
            "pg::result::value<int32>(1, 0): the result has 1 rows and 13 columns");
  EXPECT_NE(refused([&] {
              (void)rows.value<std::int32_t>(0, "Small");
            }).find("no column named \"Small\"; the columns are \"small\", \"big\""),
            std::string::npos);
}

const statement add_two{"tether_test_add", "SELECT $1::int + $2::int"};

asio::awaitable<std::vector<query_outcome>> prepared_uses(std::shared_ptr<pool> p) {
  std::vector<query_outcome> out;
  auto lease = co_await p->async_acquire();
  auto& c = *lease.connection;
  const param args[] = {"2", "3"};
  const param other[] = {"40", "2"};
  out.push_back(co_await c.execute(add_two, args));  // 0: prepares, then runs
  out.push_back(co_await c.execute(add_two, other)); // 1: runs by name
  out.push_back(co_await c.query(
      "SELECT count(*) FROM pg_prepared_statements WHERE name = 'tether_test_add'")); // 2
  out.push_back(co_await c.query("DEALLOCATE ALL")); // 3: the session loses it
  out.push_back(co_await c.execute(add_two, args));  // 4: prepared again, answered
  out.push_back(co_await c.query("BEGIN"));          // 5
  out.push_back(co_await c.query("DEALLOCATE ALL")); // 6
  out.push_back(co_await c.execute(add_two, args));  // 7: in a transaction: the error stands
  out.push_back(co_await c.query("ROLLBACK"));       // 8
  out.push_back(co_await c.execute(add_two, other)); // 9: prepared again after it
  const statement broken{"tether_test_broken", "SELEC 1"};
  out.push_back(co_await c.execute(broken)); // 10: the prepare fails
  const bool remembered = c.is_prepared("tether_test_broken");
  out.push_back(co_await c.query(remembered ? "SELECT 'remembered'" : "SELECT 'forgotten'")); // 11
  co_return out;
}

TEST_F(pg_test, prepared_statements_are_prepared_once_per_session_and_again_when_lost) {
  auto p = make();
  const auto out = run(prepared_uses(p));
  ASSERT_EQ(out.size(), 12U);
  ASSERT_FALSE(out[0].error) << out[0].message;
  EXPECT_EQ(out[0].rows.value<int>(0, 0), 5);
  ASSERT_FALSE(out[1].error) << out[1].message;
  EXPECT_EQ(out[1].rows.value<int>(0, 0), 42);
  EXPECT_EQ(out[2].rows.get(0, 0), "1") << "one statement on the server for both runs";
  ASSERT_FALSE(out[4].error) << out[4].message;
  EXPECT_EQ(out[4].rows.value<int>(0, 0), 5);
  EXPECT_EQ(out[7].error, make_error_code(errc::query_failed));
  EXPECT_EQ(out[7].sqlstate, "26000") << "not retried inside the aborted transaction";
  ASSERT_FALSE(out[9].error) << out[9].message;
  EXPECT_EQ(out[9].rows.value<int>(0, 0), 42);
  EXPECT_EQ(out[10].sqlstate, "42601"); // syntax_error
  EXPECT_EQ(out[10].message, "syntax error at or near \"SELEC\"");
  EXPECT_EQ(out[11].rows.get(0, 0), "forgotten") << "a failed prepare is not remembered";
}

// Two pipelines on one session, then what the server shows of them.
asio::awaitable<std::vector<std::vector<query_outcome>>> pipelines(std::shared_ptr<pool> p) {
  std::vector<std::vector<query_outcome>> out;
  auto lease = co_await p->async_acquire();
  auto& c = *lease.connection;
  const param two_three[] = {"2", "3"};
  const param forty_two[] = {"40", "2"};
  const param word[] = {"pipelined"};
  const pipelined reads[] = {
      {.prepared = &add_two, .params = two_three},
      {.sql = "SELECT upper($1::text)", .params = word},
      {.prepared = &add_two, .params = forty_two},
      {.sql = "SELECT count(*) FROM pg_prepared_statements WHERE name = 'tether_test_add'"},
  };
  out.push_back(co_await c.pipeline(reads)); // prepares add_two in the same round trip
  out.push_back(co_await c.pipeline(reads)); // runs it by name
  // A failure in the middle: what came before is rolled back, what comes after is not run.
  co_await c.query("CREATE TEMP TABLE t_pipe (v int)");
  const pipelined failing[] = {
      {.sql = "INSERT INTO t_pipe VALUES (1)"},
      {.sql = "SELECT 1 / 0"},
      {.sql = "INSERT INTO t_pipe VALUES (2)"},
  };
  out.push_back(co_await c.pipeline(failing));
  std::vector<query_outcome> after;
  after.push_back(co_await c.query("SELECT count(*) FROM t_pipe"));
  out.push_back(std::move(after));
  const std::span<const pipelined> nothing{};
  out.push_back(co_await c.pipeline(nothing));
  co_return out;
}

TEST_F(pg_test, a_pipeline_runs_its_statements_in_one_round_trip_and_stops_at_a_failure) {
  auto p = make();
  const auto out = run(pipelines(p));
  ASSERT_EQ(out.size(), 5U);
  for (std::size_t round = 0; round < 2; ++round) {
    const auto& reads = out[round];
    ASSERT_EQ(reads.size(), 4U);
    for (const auto& r : reads) {
      ASSERT_FALSE(r.error) << round << ": " << r.message;
    }
    EXPECT_EQ(reads[0].rows.value<int>(0, 0), 5);
    EXPECT_EQ(reads[1].rows.get(0, 0), "PIPELINED");
    EXPECT_EQ(reads[2].rows.value<int>(0, 0), 42);
    EXPECT_EQ(reads[3].rows.get(0, 0), "1")
        << "prepared once, in the first pipeline, before the count ran in it";
  }
  const auto& failing = out[2];
  ASSERT_EQ(failing.size(), 3U);
  EXPECT_FALSE(failing[0].error) << failing[0].message;
  EXPECT_EQ(failing[1].error, make_error_code(errc::query_failed));
  EXPECT_EQ(failing[1].sqlstate, "22012");
  EXPECT_EQ(failing[2].error, make_error_code(errc::pipeline_aborted));
  ASSERT_FALSE(out[3][0].error) << out[3][0].message;
  EXPECT_EQ(out[3][0].rows.get(0, 0), "0") << "the insert before the failure was rolled back";
  EXPECT_TRUE(out[4].empty());
  EXPECT_EQ(p->stats().total, 1U);
}

asio::awaitable<std::pair<query_outcome, query_outcome>> copy_then_query(std::shared_ptr<pool> p) {
  auto lease = co_await p->async_acquire();
  co_await lease.connection->query("CREATE TABLE IF NOT EXISTS t_copy (v int)");
  auto copy = co_await lease.connection->query("COPY t_copy FROM STDIN");
  auto after = co_await lease.connection->query("SELECT 1");
  co_return std::pair{std::move(copy), std::move(after)};
}

TEST_F(pg_test, copy_is_refused_cleanly_and_the_session_goes_on) {
  auto p = make();
  auto [copy, after] = run(copy_then_query(p));
  EXPECT_EQ(copy.error, make_error_code(errc::query_failed));
  EXPECT_NE(copy.message.find("COPY is not supported"), std::string::npos) << copy.message;
  EXPECT_FALSE(after.error) << after.message;
}

TEST_F(pg_test, a_server_that_is_not_there_gives_waiters_connection_refused) {
  std::uint16_t port = 0;
  {
    asio::ip::tcp::acceptor probe{io, {asio::ip::make_address("127.0.0.1"), 0}};
    port = probe.local_endpoint().port();
  }
  auto p = pool::create(io.get_executor(),
                        connector{{"hostaddr=127.0.0.1 port=" + std::to_string(port) +
                                   " user=postgres dbname=postgres"}},
                        options, coarse_monotonic_clock::instance(), observer);
  p->start();
  auto r = run(one_query(p, "SELECT 1", {}));
  EXPECT_TRUE(r.error == std::errc::connection_refused) << r.error.message();
  const std::string& said = p->get_connector().last_error();
  EXPECT_NE(said.find("Connection refused"), std::string::npos) << said;
  EXPECT_EQ(said.find_first_of("\n\t"), std::string::npos) << "one line for a log: " << said;
  EXPECT_EQ(said.find("  "), std::string::npos) << said;
}

asio::awaitable<std::error_code> hold_three_then_acquire(std::shared_ptr<pool> p) {
  auto a = co_await p->async_acquire();
  auto b = co_await p->async_acquire();
  auto c = co_await p->async_acquire();
  if (a.error || b.error || c.error) {
    co_return make_error_code(std::errc::io_error);
  }
  auto d = co_await p->async_acquire(300ms);
  co_return d.error;
}

TEST_F(pg_test, never_opens_more_than_max_size_and_times_out_waiters) {
  options.max_size = 3;
  auto p = make();
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(run(hold_three_then_acquire(p)), make_error_code(tether::errc::pool_timeout));
  EXPECT_GE(std::chrono::steady_clock::now() - started, 300ms);
  EXPECT_LE(p->stats().total, 3U);
}

asio::awaitable<int> leak_a_lease(std::shared_ptr<pool> p, std::shared_ptr<recording_observer> o,
                                  std::uint_least32_t* line) {
  // clang-format off
  *line = std::source_location::current().line(); auto lease = co_await p->async_acquire();
  // clang-format on
  asio::steady_timer wait{co_await asio::this_coro::executor, 600ms};
  co_await wait.async_wait(asio::use_awaitable);
  co_return o->leaks;
}

TEST_F(pg_test, reports_a_lease_held_past_the_leak_threshold) {
  options.leak_threshold = 200ms;
  options.housekeeping_period = 50ms;
  auto p = make();
  std::uint_least32_t line = 0;
  EXPECT_EQ(run(leak_a_lease(p, observer, &line)), 1);
  EXPECT_EQ(observer->leak_line, line);
}

asio::awaitable<query_outcome> drop_mid_transaction(std::shared_ptr<pool> p) {
  {
    auto lease = co_await p->async_acquire();
    co_await lease.connection->query("CREATE TABLE IF NOT EXISTS t_drop (v int)");
    co_await lease.connection->query("TRUNCATE t_drop");
    co_await lease.connection->begin();
    co_await lease.connection->query("INSERT INTO t_drop VALUES (1)");
  } // dropped without COMMIT
  auto lease = co_await p->async_acquire();
  co_return co_await lease.connection->query("SELECT count(*) FROM t_drop");
}

TEST_F(pg_test, a_lease_dropped_mid_transaction_is_rolled_back_and_its_session_reused) {
  options.max_size = 1;
  auto p = make();
  auto count = run(drop_mid_transaction(p));
  ASSERT_FALSE(count.error) << count.message;
  EXPECT_EQ(count.rows.get(0, 0), "0") << "the insert was rolled back";
  EXPECT_TRUE(observer->closed.empty()) << "the pool rolled the session back and kept it";
  EXPECT_EQ(p->stats().total, 1U);
}

struct transaction_story {
  query_outcome committed, counted_after_commit, failed_statement, commit_of_failed, after_end,
      counted_after_drop, state_after_drop;
  bool open_after_begin = false;
  query_outcome executed_after_drop;
  bool open_after_execute = true;
  std::vector<query_outcome> pipelined_after_drop;
};

asio::awaitable<transaction_story> transactions(std::shared_ptr<pool> p) {
  transaction_story out;
  auto lease = co_await p->async_acquire();
  auto& c = *lease.connection;
  co_await c.query("CREATE TABLE IF NOT EXISTS t_tx (v int UNIQUE)");
  co_await c.query("TRUNCATE t_tx");
  {
    transaction tx{c};
    co_await tx.begin();
    out.open_after_begin = tx.open();
    const param one[] = {"1"};
    co_await tx.query("INSERT INTO t_tx VALUES ($1::int)", one);
    out.committed = co_await tx.commit();
    out.after_end = co_await tx.query("SELECT 1");
  }
  out.counted_after_commit = co_await c.query("SELECT count(*) FROM t_tx");
  {
    transaction tx{c};
    co_await tx.begin();
    co_await tx.query("INSERT INTO t_tx VALUES (2)");
    out.failed_statement = co_await tx.query("INSERT INTO t_tx VALUES (1)"); // unique_violation
    out.commit_of_failed = co_await tx.commit();
  }
  {
    transaction tx{c};
    co_await tx.begin();
    co_await tx.query("INSERT INTO t_tx VALUES (3)");
  } // dropped open: the session's next statement rolls it back first
  out.state_after_drop = co_await c.query("SELECT now() = statement_timestamp()");
  out.counted_after_drop = co_await c.query("SELECT count(*) FROM t_tx");
  // The same before a prepared statement and before a pipeline.
  {
    transaction tx{c};
    co_await tx.begin();
    co_await tx.query("INSERT INTO t_tx VALUES (4)");
  }
  const param args[] = {"1", "1"};
  out.executed_after_drop = co_await c.execute(add_two, args);
  out.open_after_execute = c.in_transaction();
  {
    transaction tx{c};
    co_await tx.begin();
    co_await tx.query("INSERT INTO t_tx VALUES (5)");
  }
  // (A pipeline's statements share an implicit transaction: the row count tells.)
  const pipelined look[] = {{.sql = "SELECT count(*) FROM t_tx"}};
  out.pipelined_after_drop = co_await c.pipeline(look);
  co_return out;
}

TEST_F(pg_test, a_transaction_commits_reports_a_rollback_and_is_rolled_back_when_dropped) {
  auto p = make();
  const auto story = run(transactions(p));
  EXPECT_TRUE(story.open_after_begin);
  ASSERT_FALSE(story.committed.error) << story.committed.message;
  EXPECT_EQ(story.committed.rows.command(), "COMMIT");
  EXPECT_EQ(story.counted_after_commit.rows.get(0, 0), "1");
  EXPECT_EQ(story.after_end.error, make_error_code(errc::no_transaction));

  EXPECT_EQ(story.failed_statement.sqlstate, "23505");
  EXPECT_EQ(story.commit_of_failed.error, make_error_code(errc::transaction_rolled_back))
      << "COMMIT of a failed transaction is not a success";
  EXPECT_EQ(story.commit_of_failed.message,
            "COMMIT rolled the transaction back: a statement in it had failed");

  ASSERT_FALSE(story.state_after_drop.error) << story.state_after_drop.message;
  EXPECT_EQ(story.state_after_drop.rows.get(0, 0), "t")
      << "the statement ran on its own, not inside the dropped transaction";
  EXPECT_EQ(story.counted_after_drop.rows.get(0, 0), "1") << "rows 2 and 3 were rolled back";

  ASSERT_FALSE(story.executed_after_drop.error) << story.executed_after_drop.message;
  EXPECT_EQ(story.executed_after_drop.rows.value<int>(0, 0), 2);
  EXPECT_FALSE(story.open_after_execute) << "the dropped transaction was rolled back first";
  ASSERT_EQ(story.pipelined_after_drop.size(), 1U);
  ASSERT_FALSE(story.pipelined_after_drop[0].error) << story.pipelined_after_drop[0].message;
  EXPECT_EQ(story.pipelined_after_drop[0].rows.get(0, 0), "1") << "rows 4 and 5 were rolled back";
}

// Leaves session state behind, then looks at the next lease of the same (only) session.
asio::awaitable<std::vector<query_outcome>> dirty_then_look(std::shared_ptr<pool> p) {
  std::vector<query_outcome> out;
  int first_pid = 0;
  {
    auto lease = co_await p->async_acquire();
    first_pid = lease.connection->backend_pid();
    co_await lease.connection->query("SET application_name = 'left_behind'");
    co_await lease.connection->query("CREATE TEMP TABLE t_left (v int)");
    const param args[] = {"1", "2"};
    co_await lease.connection->execute(add_two, args);
  }
  auto lease = co_await p->async_acquire();
  query_outcome same;
  same.message = lease.connection->backend_pid() == first_pid ? "same" : "other";
  out.push_back(std::move(same));                                           // 0
  out.push_back(co_await lease.connection->query("SHOW application_name")); // 1
  out.push_back(co_await lease.connection->query(
      "SELECT count(*) FROM pg_class WHERE relname = 't_left'")); // 2
  const param args[] = {"20", "22"};
  out.push_back(co_await lease.connection->execute(add_two, args)); // 3
  co_return out;
}

TEST_F(pg_test, a_reset_query_clears_what_a_lease_left_on_its_session) {
  options.max_size = 1;
  auto p = pool::create(io.get_executor(),
                        connector{{.conninfo = server->conninfo(), .reset_query = "DISCARD ALL"}},
                        options, coarse_monotonic_clock::instance(), observer);
  p->start();
  const auto out = run(dirty_then_look(p));
  ASSERT_EQ(out.size(), 4U);
  EXPECT_EQ(out[0].message, "same") << "one session, reset and reused";
  EXPECT_EQ(out[1].rows.get(0, 0), "") << "the SET was dropped";
  EXPECT_EQ(out[2].rows.get(0, 0), "0") << "the temporary table was dropped";
  ASSERT_FALSE(out[3].error) << out[3].message << " (the prepared statement was prepared again)";
  EXPECT_EQ(out[3].rows.value<int>(0, 0), 42);
  EXPECT_TRUE(observer->closed.empty());
}

TEST_F(pg_test, without_a_reset_query_a_returned_session_keeps_its_state_and_costs_nothing) {
  options.max_size = 1;
  auto p = make();
  const auto out = run(dirty_then_look(p));
  ASSERT_EQ(out.size(), 4U);
  EXPECT_EQ(out[0].message, "same");
  EXPECT_EQ(out[1].rows.get(0, 0), "left_behind") << "documented: reset_query is off by default";
  ASSERT_FALSE(out[3].error) << out[3].message;
}

asio::awaitable<std::pair<query_outcome, query_outcome>>
timeout_then_reuse(std::shared_ptr<pool> p) {
  auto lease = co_await p->async_acquire();
  auto slow = co_await lease.connection->query("SELECT pg_sleep(30)", {}, 300ms);
  // The same session is usable at once: the cancel ended the statement on the server.
  auto next = co_await lease.connection->query(
      "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%' AND "
      "state = 'active'");
  co_return std::pair{std::move(slow), std::move(next)};
}

TEST_F(pg_test, a_query_past_its_timeout_is_cancelled_on_the_server) {
  auto p = make();
  const auto started = std::chrono::steady_clock::now();
  auto [slow, next] = run(timeout_then_reuse(p));
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(slow.error, make_error_code(errc::query_timeout)) << slow.message;
  EXPECT_EQ(slow.sqlstate, "57014"); // query_canceled
  EXPECT_LT(took, 5s);
  ASSERT_FALSE(next.error) << next.message;
  EXPECT_EQ(next.rows.get(0, 0), "0") << "nothing still sleeping on the server";
}

asio::awaitable<std::pair<int, int>> killed_backend(std::shared_ptr<pool> p) {
  int first_pid = 0;
  {
    auto victim = co_await p->async_acquire();
    auto killer = co_await p->async_acquire();
    first_pid = victim.connection->backend_pid();
    victim.connection.reset(); // back in the pool, idle
    // Terminate it from the other session, as an operator (or a failover) would.
    const std::string pid = std::to_string(first_pid);
    const param args[] = {pid};
    co_await killer.connection->query("SELECT pg_terminate_backend($1::int)", args);
  }
  asio::steady_timer settle{co_await asio::this_coro::executor, 100ms};
  co_await settle.async_wait(asio::use_awaitable);
  // Both sessions at once, so the pool must get past the dead one.
  auto a = co_await p->async_acquire();
  auto b = co_await p->async_acquire();
  for (auto* lease : {&a, &b}) {
    if (lease->error || lease->connection->backend_pid() == first_pid) {
      co_return std::pair{first_pid, first_pid}; // handed out a dead session
    }
    auto r = co_await lease->connection->query("SELECT 1");
    if (r.error) {
      co_return std::pair{first_pid, -1};
    }
  }
  co_return std::pair{first_pid, b.connection->backend_pid()};
}

TEST_F(pg_test, a_killed_backend_session_is_discarded_from_the_pool) {
  options.max_size = 2;
  auto p = make();
  auto [first, second] = run(killed_backend(p));
  EXPECT_NE(first, second);
  EXPECT_GT(second, 0);
  EXPECT_NE(std::find(observer->closed.begin(), observer->closed.end(),
                      tether::pool::close_reason::not_usable),
            observer->closed.end());
}

struct restart_tally {
  int attempts = 0;
  int answered = 0;
  int errored = 0;
  int after_restart_ok = 0;
  bool restarted = false;
};

asio::awaitable<void> keep_querying(std::shared_ptr<pool> p, std::shared_ptr<restart_tally> t,
                                    int rounds) {
  for (int i = 0; i < rounds; ++i) {
    ++t->attempts;
    auto lease = co_await p->async_acquire(5s);
    if (lease.error) {
      ++t->errored;
    } else {
      const param args[] = {"7"};
      auto r = co_await lease.connection->query("SELECT pg_sleep(0.01), $1::int", args, 5s);
      if (r.error) {
        ++t->errored;
        lease.connection.mark_broken();
      } else {
        ++t->answered;
        t->after_restart_ok += t->restarted ? 1 : 0;
      }
    }
    asio::steady_timer pause{co_await asio::this_coro::executor, 5ms};
    co_await pause.async_wait(asio::use_awaitable);
  }
}

TEST_F(pg_test, a_server_restart_mid_run_loses_no_query_and_the_pool_recovers) {
  options.max_size = 4;
  options.connect_backoff.initial = 100ms; // reconnect quickly in a test
  auto p = make();
  auto t = std::make_shared<restart_tally>();
  for (int i = 0; i < 4; ++i) {
    asio::co_spawn(io, keep_querying(p, t, 150), asio::detached);
  }
  ASSERT_TRUE(run_until(io, [&] { return t->answered >= 40; }));
  server->restart(); // blocks this thread; the pool's sessions are cut meanwhile
  t->restarted = true;
  ASSERT_TRUE(run_until(
      io, [&] { return t->attempts == 600 && t->answered + t->errored == 600; }, 60000ms));
  EXPECT_EQ(t->answered + t->errored, t->attempts) << "every query returned or errored";
  EXPECT_GT(t->after_restart_ok, 100) << "the pool reconnected after the restart";
}

} // namespace
} // namespace tether::pg
