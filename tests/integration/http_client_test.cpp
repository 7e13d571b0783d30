// tether's HTTP client against real servers: Debian's nginx, and tether's test server that fails
// on demand (status, stall, close, reset, a server closing a kept-alive connection under a
// request). Keep-alive reuse is checked from the server's side; retries, the budget and the
// breaker by what reached the server.
#include "tether/http/blocking_client.hpp"
#include "tether/http/client.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <future>
#include <set>
#include <thread>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_future.hpp>

#include "http_test_server.hpp"
#include "nginx_server.hpp"
#include "tether/core/error.hpp"
#include "tether/http/error.hpp"

namespace tether::http {
namespace {

using namespace std::chrono_literals;
using testing::http_test_server;
using testing::nginx_server;
using fault = http_test_server::fault;
using resilience::give_up_reason;
using resilience::retry_on;

/// A client on its own io_context thread; the test thread calls its blocking facade.
class client_fixture {
public:
  client_fixture() : client_fixture(defaults()) {}
  explicit client_fixture(const client_options& options, metrics::registry* registry = nullptr,
                          const clock& clock = monotonic_clock::instance())
      : work_{io_.get_executor()},
        client_{client::create(io_.get_executor(), options, registry, clock)}, thread_{[this] {
          io_.run();
        }} {}

  client_fixture(const client_fixture&) = delete;
  client_fixture& operator=(const client_fixture&) = delete;

  ~client_fixture() {
    asio::co_spawn(io_, client_->async_close(), asio::use_future).wait_for(10s);
    work_.reset();
    io_.stop();
    thread_.join();
  }

  client& operator*() { return *client_; }
  client* operator->() { return client_.get(); }

  client_result get(std::uint16_t port, const std::string& target) {
    return send("GET", port, target);
  }
  client_result send(const std::string& method, std::uint16_t port, const std::string& target,
                     std::string body = {}, std::vector<field> headers = {}) {
    request r;
    r.method = method;
    r.host = "127.0.0.1";
    r.port = port;
    r.target = target;
    r.body = std::move(body);
    r.headers = std::move(headers);
    return client_->send(std::move(r));
  }

  /// Stats of a host, read on the client's thread.
  client::host_stats stats(std::uint16_t port) { return stats("127.0.0.1", port); }
  client::host_stats stats(const std::string& host, std::uint16_t port) {
    std::promise<client::host_stats> p;
    asio::post(io_,
               [&] { p.set_value(client_->stats(host, port).value_or(client::host_stats{})); });
    return p.get_future().get();
  }

  asio::io_context& io() { return io_; }

private:
  static const client_options& defaults() {
    static const client_options options;
    return options;
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::shared_ptr<client> client_;
  std::thread thread_;
};

client_options fast_retries(retry_on conditions, std::uint32_t attempts) {
  client_options o;
  o.retry.conditions = conditions;
  o.retry.max_attempts = attempts;
  o.retry.backoff = {1ms, 2.0, 4ms, resilience::jitter::full};
  o.breaker.reset();
  return o;
}

client_result send_url(client_fixture& c, const std::string& method, const std::string& url,
                       std::string body = {}, std::vector<field> headers = {},
                       std::optional<std::uint32_t> max_redirects = std::nullopt) {
  auto r = request::to(method, url);
  r.body = std::move(body);
  r.headers = std::move(headers);
  r.max_redirects = max_redirects;
  return c->send(std::move(r));
}

// ---------------------------------------------------------------------------------------------
// The test server

TEST(http_client, keeps_one_connection_alive_for_many_requests) {
  http_test_server server;
  client_fixture c;
  for (int i = 0; i < 50; ++i) {
    auto r = c.get(server.port(), "/");
    ASSERT_FALSE(r.error) << r.error.message();
    EXPECT_EQ(r.response.status, 200);
    EXPECT_EQ(r.response.body, "ok");
    EXPECT_EQ(r.attempts, 1U);
  }
  EXPECT_EQ(server.requests(), 50);
  EXPECT_EQ(server.connections(), 1);
  EXPECT_EQ(c.stats(server.port()).connections_opened, 1U);
}

TEST(http_client, reads_chunked_and_echoed_bodies) {
  http_test_server server;
  client_fixture c;
  auto chunked = c.get(server.port(), "/chunked");
  ASSERT_FALSE(chunked.error) << chunked.error.message();
  EXPECT_EQ(chunked.response.body, "abbccc");
  const std::string big(300 * 1024, 'b');
  auto echoed = c.send("POST", server.port(), "/echo", big);
  ASSERT_FALSE(echoed.error) << echoed.error.message();
  EXPECT_EQ(echoed.response.body, big);
  EXPECT_EQ(server.connections(), 1);
}

TEST(http_client, a_host_given_by_name_is_looked_up_on_a_schedule_not_per_connection) {
  // "localhost" resolves through the system's resolver (/etc/hosts) like any name. Every
  // response closes its connection, so each request opens a new one.
  http_test_server server;
  metrics::registry registry;
  client_options options;
  options.resolve_interval = 1h;
  client_fixture cached{options, &registry};
  const auto url = "http://localhost:" + std::to_string(server.port()) + "/close";
  for (int i = 0; i < 5; ++i) {
    auto r = send_url(cached, "GET", url);
    ASSERT_FALSE(r.error) << r.message;
  }
  const auto stats = cached.stats("localhost", server.port());
  EXPECT_EQ(stats.connections_opened, 5U);
  // The scheduled lookup, and at most the first connection's own, made before its answer came.
  EXPECT_LE(stats.dns_lookups, 2U);
  EXPECT_GE(stats.dns_lookups, 1U);
  EXPECT_NE(registry.expose().find("tether_http_client_dns_lookups_total{client=\"default\","
                                   "host=\"localhost:" +
                                   std::to_string(server.port()) + "\",result=\"ok\"} 1"),
            std::string::npos)
      << registry.expose();

  options.resolve_interval = 0s;
  client_fixture uncached{options};
  for (int i = 0; i < 3; ++i) {
    auto r = send_url(uncached, "GET", url);
    ASSERT_FALSE(r.error) << r.message;
  }
  EXPECT_EQ(uncached.stats("localhost", server.port()).dns_lookups, 3U)
      << "without the schedule, every connection looks the name up";
}

TEST(http_client, a_streamed_body_gets_only_the_answer_never_a_retried_response) {
  // A 503, retried, then a 200: the 503's body ("failing") must not reach the reader.
  http_test_server server;
  server.set_fault(fault::status, 1, 503);
  client_fixture c{fast_retries(retry_on::gateway_error, 2)};
  std::string seen;
  auto r = request::to("GET", "http://127.0.0.1:" + std::to_string(server.port()) + "/");
  r.on_body = [&](std::string_view piece) {
    seen.append(piece);
    return true;
  };
  const auto out = c->send(std::move(r));
  ASSERT_FALSE(out.error) << out.message;
  EXPECT_EQ(out.response.status, 200);
  EXPECT_EQ(out.attempts, 2U);
  EXPECT_EQ(seen, "ok");
  EXPECT_TRUE(out.response.body.empty()) << "a streamed body is not kept";
}

TEST(http_client, a_produced_body_goes_chunked_or_with_its_length) {
  http_test_server server;
  client_fixture c;
  const auto url = "http://127.0.0.1:" + std::to_string(server.port()) + "/echo";
  const std::string piece(100 * 1024, 'p');
  int calls = 0;
  const auto ten_pieces = [&]() -> std::string_view {
    return calls++ < 10 ? std::string_view{piece} : std::string_view{};
  };
  auto chunked = request::to("POST", url);
  chunked.body_source = ten_pieces;
  const auto echoed = c->send(chunked);
  ASSERT_FALSE(echoed.error) << echoed.message;
  EXPECT_EQ(echoed.response.body.size(), 10U * piece.size());
  EXPECT_EQ(echoed.response.body.find_first_not_of('p'), std::string::npos);
  EXPECT_EQ(calls, 11) << "ten pieces and the end";

  calls = 0;
  auto sized = request::to("POST", url);
  sized.body_source = ten_pieces;
  sized.body_length = 10 * piece.size();
  const auto echoed_sized = c->send(sized);
  ASSERT_FALSE(echoed_sized.error) << echoed_sized.message;
  EXPECT_EQ(echoed_sized.response.body.size(), 10U * piece.size());

  // A source that gives more than the length it promised: an error, and nothing is reused.
  calls = 0;
  auto lying = request::to("POST", url);
  lying.body_source = ten_pieces;
  lying.body_length = 1000;
  const auto refused = c->send(lying);
  EXPECT_EQ(refused.error, errc::invalid_content_length) << refused.message;
  const auto after = c.get(server.port(), "/");
  ASSERT_FALSE(after.error) << after.message;

  auto both = request::to("POST", url);
  both.body = "x";
  both.body_source = ten_pieces;
  EXPECT_EQ(c->send(both).error, tether::errc::invalid_request);
}

TEST(http_client, a_produced_body_is_sent_once_whatever_the_retry_rules) {
  // PUT is idempotent and 503 is retried by these rules, but the body cannot be produced twice.
  http_test_server server;
  server.set_fault(fault::status, -1, 503);
  client_fixture c{fast_retries(retry_on::gateway_error, 3)};
  int calls = 0;
  auto r = request::to("PUT", "http://127.0.0.1:" + std::to_string(server.port()) + "/");
  r.body_source = [&]() -> std::string_view { return calls++ == 0 ? "once" : ""; };
  const auto out = c->send(r);
  ASSERT_FALSE(out.error) << out.message;
  EXPECT_EQ(out.response.status, 503);
  EXPECT_EQ(out.attempts, 1U);
  EXPECT_EQ(out.reason, give_up_reason::body_not_replayable);
  EXPECT_EQ(server.requests(), 1);
  EXPECT_EQ(calls, 2);
}

TEST(http_client, a_response_that_closes_the_connection_is_not_reused) {
  http_test_server server;
  client_fixture c;
  ASSERT_FALSE(c.get(server.port(), "/close").error);
  ASSERT_FALSE(c.get(server.port(), "/").error);
  EXPECT_EQ(server.connections(), 2);
}

TEST(http_client, retries_an_idempotent_request_on_503) {
  http_test_server server;
  server.set_fault(fault::status, 2, 503);
  client_fixture c{fast_retries(retry_on::gateway_error, 3)};
  auto r = c.get(server.port(), "/");
  ASSERT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(r.attempts, 3U);
  EXPECT_EQ(server.requests(), 3);
}

TEST(http_client, gives_back_the_last_5xx_when_attempts_run_out) {
  http_test_server server;
  server.set_fault(fault::status, -1, 503);
  client_fixture c{fast_retries(retry_on::gateway_error, 3)};
  auto r = c.get(server.port(), "/");
  ASSERT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(r.response.status, 503);
  EXPECT_EQ(r.response.body, "failing");
  EXPECT_EQ(r.reason, give_up_reason::attempts_exhausted);
  EXPECT_EQ(server.requests(), 3);
}

TEST(http_client, never_sends_a_post_twice) {
  http_test_server server;
  client_fixture c{fast_retries(retry_on::gateway_error | retry_on::reset, 3)};
  server.set_fault(fault::status, -1, 503);
  auto answered = c.send("POST", server.port(), "/", "order=1");
  ASSERT_FALSE(answered.error);
  EXPECT_EQ(answered.response.status, 503);
  EXPECT_EQ(answered.reason, give_up_reason::not_idempotent);
  server.set_fault(fault::close, -1);
  auto cut = c.send("POST", server.port(), "/", "order=2");
  EXPECT_EQ(cut.error, asio::error::eof) << cut.error.message();
  EXPECT_EQ(cut.attempts, 1U);
  EXPECT_EQ(server.requests_with("POST"), 2);
}

TEST(http_client, retries_a_post_that_carries_an_idempotency_key) {
  http_test_server server;
  server.set_fault(fault::status, 2, 503);
  client_fixture c{fast_retries(retry_on::gateway_error, 3)};
  auto r = c.send("POST", server.port(), "/", "order=1", {{"Idempotency-Key", "order-1"}});
  ASSERT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(server.requests_with("POST"), 3);
}

TEST(http_client, a_per_try_timeout_ends_a_stalled_attempt_and_retries) {
  http_test_server server;
  server.set_fault(fault::stall, 1);
  auto options = fast_retries(retry_on::timeout, 2);
  options.retry.per_try_timeout = 200ms;
  client_fixture c{options};
  auto r = c.get(server.port(), "/");
  ASSERT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(r.attempts, 2U);
  // The stalled connection was closed, not pooled: the retry came on a new one.
  EXPECT_EQ(server.connections(), 2);
}

TEST(http_client, a_stalled_server_ends_in_a_timeout_error) {
  http_test_server server;
  server.set_fault(fault::stall, -1);
  auto options = fast_retries(retry_on::none, 1);
  options.retry.per_try_timeout = 100ms;
  client_fixture c{options};
  auto r = c.get(server.port(), "/");
  // Its own error, not the connect timeout's "Connection timed out": the connection was made.
  EXPECT_EQ(r.error, tether::errc::response_timeout) << r.error.message();
  EXPECT_EQ(r.message, "GET http://127.0.0.1:" + std::to_string(server.port()) +
                           "/: no response within the per-try timeout");
  EXPECT_EQ(r.attempts, 1U);
}

TEST(http_client, its_pools_keep_the_clock_the_user_gave) {
  // A lease held across 7 s of the injected clock is 7 s in the pool's usage histogram: the
  // pools do not time themselves on a clock of their own.
  http_test_server server;
  server.set_fault(fault::stall, -1);
  manual_clock clock;
  auto options = fast_retries(retry_on::none, 1);
  options.retry.per_try_timeout = 200ms;
  metrics::registry registry;
  client_fixture c{options, &registry, clock};
  auto pending = std::async(std::launch::async, [&] { return c.get(server.port(), "/"); });
  for (int i = 0; i < 500 && server.requests() == 0; ++i) {
    std::this_thread::sleep_for(2ms);
  }
  ASSERT_EQ(server.requests(), 1);
  clock.advance(7s);
  EXPECT_EQ(pending.get().error, tether::errc::response_timeout);
  const auto text = registry.expose();
  EXPECT_NE(
      text.find("tether_pool_connection_usage_seconds_sum{client=\"default\",host=\"127.0.0.1:" +
                std::to_string(server.port()) + "\"} 7\n"),
      std::string::npos)
      << text;
}

TEST(http_client, the_overall_timeout_bounds_every_attempt) {
  http_test_server server;
  server.set_fault(fault::stall, -1);
  auto options = fast_retries(retry_on::timeout | retry_on::reset, 5);
  options.retry.overall_timeout = 300ms;
  client_fixture c{options};
  auto r = c.get(server.port(), "/");
  EXPECT_EQ(r.error, tether::errc::deadline_exceeded) << r.error.message();
}

TEST(http_client, a_request_may_carry_its_own_timeouts) {
  http_test_server server;
  server.set_fault(fault::stall, -1);
  // The client's own limits would wait 15 s for this stalled server.
  client_fixture c{fast_retries(retry_on::none, 1)};
  request r = request::to("GET", "http://127.0.0.1:" + std::to_string(server.port()) + "/");
  r.per_try_timeout = 100ms;
  auto per_try = c->send(r);
  EXPECT_EQ(per_try.error, tether::errc::response_timeout) << per_try.message;
  r.per_try_timeout.reset();
  r.timeout = 150ms;
  auto overall = c->send(r);
  EXPECT_EQ(overall.error, tether::errc::deadline_exceeded) << overall.message;
  r.timeout = -1ms;
  auto negative = c->send(r);
  EXPECT_EQ(negative.error, tether::errc::invalid_request);
  EXPECT_NE(negative.message.find("a timeout is negative"), std::string::npos) << negative.message;
  EXPECT_EQ(server.requests(), 2);
}

// Runs `r` on the client's thread with a cancellation slot, cancels it once `cancel_when` holds
// (polled within a bound), and returns what the request ended with.
client_result cancelled_request(client_fixture& c, request r,
                                const std::function<bool()>& cancel_when) {
  asio::cancellation_signal signal;
  std::promise<client_result> ended;
  auto result = ended.get_future();
  asio::post(c.io(), [&] {
    asio::co_spawn(
        c.io(), c->async_request(std::move(r)),
        asio::bind_cancellation_slot(signal.slot(), [&](std::exception_ptr e, client_result out) {
          if (e) {
            ended.set_exception(e);
          } else {
            ended.set_value(std::move(out));
          }
        }));
  });
  for (int i = 0; i < 1000 && !cancel_when(); ++i) {
    std::this_thread::sleep_for(2ms);
  }
  std::promise<void> emitted;
  asio::post(c.io(), [&] {
    signal.emit(asio::cancellation_type::terminal);
    emitted.set_value();
  });
  emitted.get_future().wait();
  if (result.wait_for(10s) != std::future_status::ready) {
    ADD_FAILURE() << "the cancelled request did not end";
    std::abort(); // the promise and signal are on this frame
  }
  return result.get();
}

TEST(http_client, a_cancelled_request_ends_at_once_is_not_retried_and_not_held_against_the_host) {
  http_test_server server;
  server.set_fault(fault::stall, 1);
  auto options = fast_retries(retry_on::timeout | retry_on::reset, 3);
  // A breaker that one failure opens: a cancellation counted as a failure would open it.
  options.breaker.emplace();
  options.breaker->minimum_calls = 1;
  options.breaker->window_size = 1;
  options.breaker->failures = resilience::breaker_failures::gateway_errors;
  metrics::registry registry;
  client_fixture c{options, &registry};
  const auto url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
  auto r = cancelled_request(c, request::to("GET", url), [&] { return server.requests() == 1; });
  EXPECT_EQ(r.error, std::errc::operation_canceled) << r.message;
  EXPECT_EQ(r.message, "GET " + url + ": cancelled");
  EXPECT_EQ(r.attempts, 1U);
  EXPECT_EQ(server.requests(), 1) << "a cancelled request is not retried";
  EXPECT_EQ(c.stats(server.port()).breaker, resilience::breaker_state::closed);

  // The connection cut mid-exchange is not reused: the next request opens another.
  auto next = c.get(server.port(), "/");
  ASSERT_FALSE(next.error) << next.message;
  EXPECT_EQ(next.response.status, 200);
  EXPECT_EQ(server.connections(), 2);
  const auto text = registry.expose();
  const std::string labels =
      "client=\"default\",host=\"127.0.0.1:" + std::to_string(server.port()) + "\"";
  EXPECT_NE(text.find("tether_http_client_requests_total{" + labels + ",result=\"cancelled\"} 1"),
            std::string::npos)
      << text;
}

TEST(http_client, a_request_cancelled_while_it_waits_to_retry_stops_waiting) {
  http_test_server server;
  server.set_fault(fault::status, -1, 503);
  auto options = fast_retries(retry_on::gateway_error, 3);
  options.retry.backoff = {30s, 1.0, 30s, resilience::jitter::none};
  options.retry.overall_timeout = 120s; // room for the wait, so that the retry is decided
  client_fixture c{options};
  const auto url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
  auto r = cancelled_request(c, request::to("GET", url), [&] { return server.requests() == 1; });
  EXPECT_EQ(r.error, std::errc::operation_canceled) << r.message;
  EXPECT_EQ(server.requests(), 1);
}

TEST(http_client, a_caller_on_another_thread_that_loses_a_race_cancels_on_the_clients_thread) {
  // The caller's coroutine runs on an io_context of its own: its cancellation must reach the
  // request's operations on the client's thread, not run their handlers on the caller's (TSan
  // sees the difference).
  http_test_server server;
  server.set_fault(fault::stall, -1);
  client_fixture c{fast_retries(retry_on::timeout | retry_on::reset, 3)};
  asio::io_context caller_io;
  auto r = request::to("GET", "http://127.0.0.1:" + std::to_string(server.port()) + "/");
  auto raced = asio::co_spawn(
      caller_io,
      [&]() -> asio::awaitable<std::size_t> {
        using namespace asio::experimental::awaitable_operators;
        const auto executor = co_await asio::this_coro::executor;
        asio::steady_timer timer{executor, 50ms};
        auto requested = c->async_request(r);
        auto waited = timer.async_wait(asio::use_awaitable);
        auto which = co_await (std::move(requested) || std::move(waited));
        co_return which.index();
      },
      asio::use_future);
  std::thread caller{[&] { caller_io.run_for(10s); }};
  const auto ready = raced.wait_for(10s);
  caller.join();
  ASSERT_EQ(ready, std::future_status::ready);
  EXPECT_EQ(raced.get(), 1U);
  EXPECT_EQ(server.requests(), 1);
}

TEST(http_client, a_request_cancelled_while_it_waits_for_a_connection_leaves_the_line) {
  http_test_server server;
  server.set_fault(fault::stall, 1);
  auto options = fast_retries(retry_on::none, 1);
  options.pool.max_size = 1;
  options.pool.acquire_timeout = 30s;
  options.retry.per_try_timeout = 1s; // the first request, stalled, holds the one connection
  client_fixture c{options};
  auto first = std::async(std::launch::async, [&] { return c.get(server.port(), "/"); });
  for (int i = 0; i < 1000 && server.requests() == 0; ++i) {
    std::this_thread::sleep_for(1ms); // until the first holds the connection
  }
  ASSERT_EQ(server.requests(), 1);
  const auto url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
  auto r = cancelled_request(c, request::to("GET", url),
                             [&] { return c.stats(server.port()).pool.pending == 1; });
  EXPECT_EQ(r.error, std::errc::operation_canceled) << r.message;
  EXPECT_EQ(r.message, "GET " + url + ": cancelled");
  EXPECT_EQ(c.stats(server.port()).pool.pending, 0U);
  EXPECT_EQ(first.get().error, tether::errc::response_timeout);
  EXPECT_EQ(server.requests(), 1) << "the cancelled request was never sent";
}

TEST(http_client, losing_a_race_cancels_the_request_without_an_exception) {
  // The idiom: co_await (client->async_request(r) || timer.async_wait(...)).
  http_test_server server;
  server.set_fault(fault::stall, -1);
  client_fixture c{fast_retries(retry_on::timeout | retry_on::reset, 3)};
  auto r = request::to("GET", "http://127.0.0.1:" + std::to_string(server.port()) + "/");
  auto raced = asio::co_spawn(
      c.io(),
      [&]() -> asio::awaitable<std::size_t> {
        using namespace asio::experimental::awaitable_operators;
        // Each awaitable named first: g++ 12 miscompiles temporaries inside a co_await.
        const auto executor = co_await asio::this_coro::executor;
        asio::steady_timer timer{executor, 50ms};
        auto requested = c->async_request(r);
        auto waited = timer.async_wait(asio::use_awaitable);
        auto which = co_await (std::move(requested) || std::move(waited));
        co_return which.index();
      },
      asio::use_future);
  ASSERT_EQ(raced.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(raced.get(), 1U) << "the timer won";
  EXPECT_EQ(server.requests(), 1) << "the stalled attempt was not retried after the race";
}

TEST(blocking_client, runs_its_own_thread_for_callers_without_an_io_context) {
  http_test_server server;
  const auto url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
  std::atomic<int> ok{0};
  {
    blocking_client http;
    auto caller = [&] {
      for (int i = 0; i < 20; ++i) {
        const auto r = http.send(request::to("GET", url));
        if (!r.error && r.response.status == 200 && r.response.body == "ok") {
          ++ok;
        }
      }
    };
    std::thread a{caller};
    std::thread b{caller};
    a.join();
    b.join();
  } // closes its pools and joins its thread
  EXPECT_EQ(ok.load(), 40);
  EXPECT_EQ(server.requests(), 40);
  EXPECT_LE(server.connections(), 2) << "kept alive and pooled across the callers";
}

TEST(http_client, refused_connections_are_retried_then_reported) {
  std::uint16_t closed_port = 0;
  {
    asio::io_context io;
    asio::ip::tcp::acceptor a{io, {asio::ip::make_address("127.0.0.1"), 0}};
    closed_port = a.local_endpoint().port();
  }
  client_fixture c{fast_retries(retry_on::connect_failure | retry_on::refused, 2)};
  auto r = c.get(closed_port, "/items?id=7");
  EXPECT_EQ(r.error, std::errc::connection_refused) << r.error.message();
  EXPECT_EQ(r.attempts, 2U);
  EXPECT_EQ(r.reason, give_up_reason::attempts_exhausted);
  // The message names the request, the host it went to and what happened there.
  EXPECT_EQ(r.message, "GET http://127.0.0.1:" + std::to_string(closed_port) +
                           "/items?id=7: cannot connect: " + r.error.message() + " (2 attempts)");
}

TEST(http_client, a_stale_kept_alive_connection_is_replaced_for_a_get) {
  http_test_server server;
  client_fixture c{fast_retries(retry_on::none, 1)};
  ASSERT_FALSE(c.get(server.port(), "/").error);
  // The server now closes any connection's second request unanswered, as one whose keep-alive
  // timeout fires just as the request arrives.
  server.set_fault(fault::drop_reused, -1);
  auto r = c.get(server.port(), "/");
  ASSERT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(r.attempts, 2U);
  EXPECT_EQ(server.connections(), 2);
}

TEST(http_client, a_stale_connection_does_not_make_a_post_go_twice) {
  http_test_server server;
  client_fixture c{fast_retries(retry_on::none, 1)};
  ASSERT_FALSE(c.send("POST", server.port(), "/", "first").error);
  server.set_fault(fault::drop_reused, -1);
  auto r = c.send("POST", server.port(), "/", "second");
  EXPECT_TRUE(r.error);
  EXPECT_EQ(r.attempts, 1U);
  EXPECT_EQ(server.requests_with("POST"), 2);
}

TEST(http_client, a_reset_is_reported_as_such) {
  http_test_server server;
  server.set_fault(fault::reset, -1);
  client_fixture c{fast_retries(retry_on::none, 1)};
  auto r = c.get(server.port(), "/");
  EXPECT_TRUE(r.error == std::errc::connection_reset || r.error == asio::error::eof)
      << r.error.message() << " status " << r.response.status << " attempts " << r.attempts;
}

TEST(http_client, a_malformed_response_is_an_error_and_not_retried) {
  http_test_server server;
  client_fixture c{fast_retries(retry_on::status_5xx | retry_on::reset, 3)};
  auto r = c.get(server.port(), "/garbage");
  EXPECT_EQ(r.error, http::errc::invalid_content_length) << r.error.message();
  EXPECT_EQ(r.attempts, 1U);
  EXPECT_EQ(server.requests(), 1);
}

TEST(http_client, refuses_requests_that_would_change_the_framing) {
  http_test_server server;
  client_fixture c;
  const auto port = std::to_string(server.port());
  auto r = c.send("GET", server.port(), "/", {}, {{"X-Bad", "a\r\nX-Injected: 1"}});
  EXPECT_EQ(r.error, tether::errc::invalid_request);
  EXPECT_EQ(r.message, "GET http://127.0.0.1:" + port +
                           "/: the value of the header X-Bad holds the byte 0x0D at offset 1: a "
                           "field value cannot hold control bytes (CR and LF would end it)");
  r = c.send("POST", server.port(), "/", "x", {{"Content-Length", "5"}});
  EXPECT_EQ(r.error, tether::errc::invalid_request);
  EXPECT_NE(r.message.find("Content-Length is the client's to set"), std::string::npos)
      << r.message;
  EXPECT_EQ(c.send("POST", server.port(), "/", "x", {{"Transfer-Encoding", "chunked"}}).error,
            tether::errc::invalid_request);
  EXPECT_EQ(c.send("GET", server.port(), "/a b").error, tether::errc::invalid_request);
  EXPECT_EQ(c.send("GE T", server.port(), "/").error, tether::errc::invalid_request);
  EXPECT_EQ(server.requests(), 0);
}

TEST(http_client, a_retry_after_beyond_the_limit_ends_the_request) {
  http_test_server server;
  server.set_fault(fault::status, -1, 503, "120");
  auto options = fast_retries(retry_on::gateway_error, 3);
  options.retry.max_retry_after = 1s;
  client_fixture c{options};
  auto r = c.get(server.port(), "/");
  ASSERT_FALSE(r.error);
  EXPECT_EQ(r.response.status, 503);
  EXPECT_EQ(*r.response.find("retry-after"), "120");
  EXPECT_EQ(r.attempts, 1U);
  EXPECT_EQ(server.requests(), 1);
}

TEST(http_client, the_retry_budget_caps_retries) {
  http_test_server server;
  server.set_fault(fault::status, -1, 503);
  manual_clock clock;
  auto options = fast_retries(retry_on::gateway_error, 5);
  // No share of requests, and a reserve of one retry (1 per second over a 1 s window).
  options.budget = resilience::windowed_retry_budget_options{1s, 1, 0.0};
  metrics::registry registry;
  client_fixture c{options, &registry, clock};
  auto first = c.get(server.port(), "/");
  EXPECT_EQ(first.attempts, 2U);
  EXPECT_EQ(first.reason, give_up_reason::budget_exhausted);
  auto second = c.get(server.port(), "/");
  EXPECT_EQ(second.attempts, 1U);
  EXPECT_EQ(second.reason, give_up_reason::budget_exhausted);
  EXPECT_EQ(server.requests(), 3);
  const auto text = registry.expose();
  EXPECT_NE(
      text.find(
          "tether_http_client_retry_budget_exhausted_total{client=\"default\",host=\"127.0.0.1:" +
          std::to_string(server.port()) + "\"} 2"),
      std::string::npos)
      << text;
}

TEST(http_client, a_500_is_not_a_breaker_failure_unless_asked) {
  // A 500 is most often about the request, not the host (resilience::breaker_failures).
  http_test_server server;
  server.set_fault(fault::status, -1, 500);
  manual_clock clock;
  auto options = fast_retries(retry_on::none, 1);
  resilience::circuit_breaker_options breaker;
  breaker.window_size = 4;
  breaker.minimum_calls = 4;
  options.breaker = breaker;
  client_fixture c{options, nullptr, clock};
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(c.get(server.port(), "/").response.status, 500);
  }
  EXPECT_EQ(c.stats(server.port()).breaker, resilience::breaker_state::closed);

  breaker.failures = resilience::breaker_failures::all_5xx;
  options.breaker = breaker;
  client_fixture counting{options, nullptr, clock};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(counting.get(server.port(), "/").response.status, 500);
  }
  EXPECT_EQ(counting.stats(server.port()).breaker, resilience::breaker_state::open);
}

TEST(http_client, the_breaker_opens_fails_fast_half_opens_and_closes) {
  http_test_server server;
  server.set_fault(fault::status, -1, 503);
  manual_clock clock;
  auto options = fast_retries(retry_on::none, 1);
  resilience::circuit_breaker_options breaker;
  breaker.window_size = 4;
  breaker.minimum_calls = 4;
  breaker.wait_in_open = 30s;
  breaker.permitted_calls_in_half_open = 2;
  options.breaker = breaker;
  metrics::registry registry;
  client_fixture c{options, &registry, clock};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(c.get(server.port(), "/").response.status, 503);
  }
  EXPECT_EQ(c.stats(server.port()).breaker, resilience::breaker_state::open);
  auto refused = c.get(server.port(), "/");
  EXPECT_EQ(refused.error, tether::errc::circuit_open);
  EXPECT_EQ(server.requests(), 4); // failing fast cost the server nothing

  server.heal();
  clock.advance(30s);
  EXPECT_EQ(c.get(server.port(), "/").response.status, 200);
  EXPECT_EQ(c.stats(server.port()).breaker, resilience::breaker_state::half_open);
  EXPECT_EQ(c.get(server.port(), "/").response.status, 200);
  EXPECT_EQ(c.stats(server.port()).breaker, resilience::breaker_state::closed);

  const auto text = registry.expose();
  const std::string host = "host=\"127.0.0.1:" + std::to_string(server.port()) + "\"";
  EXPECT_NE(text.find("tether_http_client_requests_total{client=\"default\"," + host +
                      ",result=\"circuit_open\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("tether_http_client_requests_total{client=\"default\"," + host +
                      ",result=\"5xx\"} 4"),
            std::string::npos);
  EXPECT_NE(text.find("tether_breaker_state{client=\"default\"," + host + ",state=\"closed\"} 1"),
            std::string::npos);
}

TEST(http_client, metrics_show_requests_retries_and_the_pool) {
  http_test_server server;
  server.set_fault(fault::status, 1, 503);
  metrics::registry registry;
  client_fixture c{fast_retries(retry_on::gateway_error, 2), &registry};
  ASSERT_FALSE(c.get(server.port(), "/").error);
  ASSERT_FALSE(c.get(server.port(), "/").error);
  const auto text = registry.expose();
  const std::string labels =
      "client=\"default\",host=\"127.0.0.1:" + std::to_string(server.port()) + "\"";
  for (const std::string& series :
       {"tether_http_client_requests_total{" + labels + ",result=\"2xx\"} 2",
        "tether_http_client_attempts_total{" + labels + "} 3",
        "tether_http_client_retries_total{" + labels + ",reason=\"http_status\"} 1",
        "tether_http_client_request_duration_seconds_count{" + labels + "} 2",
        "tether_pool_connections{" + labels + ",state=\"idle\"} 1"}) {
    EXPECT_NE(text.find(series), std::string::npos) << series << "\n" << text;
  }
}

TEST(http_client, send_on_the_clients_own_thread_refuses_to_block) {
  client_fixture c;
  std::promise<std::error_code> p;
  asio::post(c.io(), [&] { p.set_value(c->send(request::to("GET", "http://127.0.0.1/")).error); });
  EXPECT_EQ(p.get_future().get(), tether::errc::blocking_on_worker);
}

// ---------------------------------------------------------------------------------------------
// nginx

asio::awaitable<int> fetch_many(std::shared_ptr<client> c, std::uint16_t port, int count) {
  int ok = 0;
  for (int i = 0; i < count; ++i) {
    auto r = co_await c->async_request(
        request::to("GET", "http://127.0.0.1:" + std::to_string(port) + "/small.txt"));
    ok += (!r.error && r.response.status == 200 && r.response.body == "hello from nginx\n") ? 1 : 0;
  }
  co_return ok;
}

TEST(http_client_nginx, many_requests_ride_few_connections) {
  nginx_server nginx;
  asio::io_context io;
  client_options options;
  options.pool.max_size = 4;
  auto c = client::create(io.get_executor(), options);
  std::vector<std::future<int>> done;
  for (int i = 0; i < 8; ++i) {
    done.push_back(asio::co_spawn(io, fetch_many(c, nginx.port(), 50), asio::use_future));
  }
  std::thread runner{[&] { io.run_for(30s); }};
  int ok = 0;
  for (auto& f : done) {
    ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
    ok += f.get();
  }
  asio::co_spawn(io, c->async_close(), asio::use_future).wait_for(10s);
  io.stop();
  runner.join();
  EXPECT_EQ(ok, 400);
  const auto log = nginx.access_log(400);
  ASSERT_EQ(log.size(), 400U);
  std::set<long> connections;
  long most = 0;
  for (const auto& l : log) {
    connections.insert(l.connection);
    most = std::max(most, l.connection_requests);
  }
  EXPECT_LE(connections.size(), 4U); // never more than the pool's max_size
  EXPECT_GE(most, 50);               // connections carried many requests each
}

TEST(http_client_nginx, reads_a_large_static_file_and_heads) {
  nginx_server nginx;
  client_fixture c;
  auto large = c.get(nginx.port(), "/large.bin");
  ASSERT_FALSE(large.error) << large.error.message();
  EXPECT_EQ(large.response.body.size(), 1024U * 1024U);
  auto head = c.send("HEAD", nginx.port(), "/small.txt");
  ASSERT_FALSE(head.error) << head.error.message();
  EXPECT_EQ(head.response.status, 200);
  EXPECT_EQ(*head.response.find("content-length"), "17");
  EXPECT_TRUE(head.response.body.empty());
  auto after = c.get(nginx.port(), "/small.txt");
  ASSERT_FALSE(after.error);
  EXPECT_EQ(after.response.body, "hello from nginx\n");
  const auto log = nginx.access_log(3);
  ASSERT_EQ(log.size(), 3U);
  EXPECT_EQ(log[2].connection, log[0].connection);
  EXPECT_EQ(log[2].connection_requests, 3);
}

TEST(http_client_nginx, retries_gets_on_503_but_not_posts) {
  nginx_server nginx;
  client_fixture c{fast_retries(retry_on::gateway_error, 3)};
  auto get = c.get(nginx.port(), "/fail");
  EXPECT_EQ(get.response.status, 503);
  EXPECT_EQ(get.attempts, 3U);
  auto post = c.send("POST", nginx.port(), "/fail", "payload");
  EXPECT_EQ(post.response.status, 503);
  EXPECT_EQ(post.attempts, 1U);
  int gets = 0;
  int posts = 0;
  for (const auto& l : nginx.access_log(4)) {
    gets += l.method == "GET" ? 1 : 0;
    posts += l.method == "POST" ? 1 : 0;
  }
  EXPECT_EQ(gets, 3);
  EXPECT_EQ(posts, 1);
}

// Redirects served by nginx: `return 3xx` with absolute and relative Locations, an endpoint that
// shows what reached it, and a second nginx as another origin.
std::string redirect_locations(std::uint16_t other_port) {
  return "    location = /show { return 200 \"$request_method auth=[$http_authorization] "
         "cookie=[$http_cookie] type=[$content_type] length=[$content_length]\\n\"; }\n"
         "    location = /a/b/up { absolute_redirect off; return 302 ../../show; }\n"
         "    location = /moved { return 301 /show; }\n"
         "    location = /see-other { return 303 /show; }\n"
         "    location = /temporary { return 307 /show; }\n"
         "    location = /permanent { return 308 /show; }\n"
         "    location = /loop { return 302 /loop; }\n"
         "    location = /elsewhere { return 302 http://127.0.0.1:" +
         std::to_string(other_port) +
         "/show; }\n"
         "    location = /nowhere { return 302 \"ftp://127.0.0.1/file\"; }\n";
}

TEST(http_client_nginx, follows_redirects_when_asked_with_the_methods_rfc_9110_gives) {
  nginx_server other{redirect_locations(1)};
  nginx_server nginx{redirect_locations(other.port())};
  client_options options;
  options.max_redirects = 3;
  client_fixture c{options};
  const auto base = "http://127.0.0.1:" + std::to_string(nginx.port());

  auto up = send_url(c, "GET", base + "/a/b/up");
  ASSERT_FALSE(up.error) << up.message;
  EXPECT_EQ(up.response.status, 200);
  EXPECT_EQ(up.response.body, "GET auth=[] cookie=[] type=[] length=[]\n");
  EXPECT_EQ(up.redirects, 1U);
  EXPECT_EQ(up.url, base + "/show") << "a relative Location, resolved";

  // 303 (and 301 for a POST): a GET without the body; 307 and 308: the POST again, body and all.
  const std::vector<field> form{{"Content-Type", "text/plain"}};
  for (const auto& [path, expected] : std::vector<std::pair<std::string, std::string>>{
           {"/see-other", "GET auth=[] cookie=[] type=[] length=[]\n"},
           {"/moved", "GET auth=[] cookie=[] type=[] length=[]\n"},
           {"/temporary", "POST auth=[] cookie=[] type=[text/plain] length=[5]\n"},
           {"/permanent", "POST auth=[] cookie=[] type=[text/plain] length=[5]\n"}}) {
    auto r = send_url(c, "POST", base + path, "hello", form);
    ASSERT_FALSE(r.error) << path << ": " << r.message;
    EXPECT_EQ(r.response.body, expected) << path;
  }

  // Credentials stay with their origin.
  const std::vector<field> secrets{{"Authorization", "Bearer t"}, {"Cookie", "s=1"}};
  auto same = send_url(c, "GET", base + "/see-other", {}, secrets);
  EXPECT_EQ(same.response.body, "GET auth=[Bearer t] cookie=[s=1] type=[] length=[]\n");
  auto crossed = send_url(c, "GET", base + "/elsewhere", {}, secrets);
  ASSERT_FALSE(crossed.error) << crossed.message;
  EXPECT_EQ(crossed.response.body, "GET auth=[] cookie=[] type=[] length=[]\n");
  EXPECT_EQ(crossed.url, "http://127.0.0.1:" + std::to_string(other.port()) + "/show");
  ASSERT_EQ(other.access_log(1).size(), 1U);
}

TEST(http_client_nginx, a_redirect_is_the_answer_unless_asked_and_a_loop_ends_at_the_limit) {
  nginx_server nginx{redirect_locations(1)};
  client_fixture c;
  const auto base = "http://127.0.0.1:" + std::to_string(nginx.port());
  auto plain = send_url(c, "GET", base + "/see-other");
  ASSERT_FALSE(plain.error) << plain.message;
  EXPECT_EQ(plain.response.status, 303) << "max_redirects is 0 by default";
  EXPECT_EQ(plain.redirects, 0U);

  auto loop = send_url(c, "GET", base + "/loop", {}, {}, 3);
  EXPECT_EQ(loop.error, tether::errc::too_many_redirects);
  EXPECT_EQ(loop.message, "GET " + base + "/loop: a 302 to " + base +
                              "/loop after 3 redirects, the limit (max_redirects)");
  EXPECT_EQ(loop.redirects, 3U);

  auto nowhere = send_url(c, "GET", base + "/nowhere", {}, {}, 3);
  EXPECT_EQ(nowhere.error, tether::errc::bad_redirect);
  EXPECT_NE(nowhere.message.find("the redirect's Location \"ftp://127.0.0.1/file\" cannot be "
                                 "followed"),
            std::string::npos)
      << nowhere.message;
  // 1 + (1 + 3) + 1 requests reached nginx: the loop stopped at its limit.
  EXPECT_EQ(nginx.access_log(6).size(), 6U);
}

TEST(http_client_nginx, streams_a_body_larger_than_the_limit_and_stops_when_asked) {
  nginx_server nginx{redirect_locations(1)};
  client_options options;
  options.max_response_body = 64 * 1024; // large.bin is 1 MiB
  options.max_redirects = 2;
  client_fixture c{options};
  const auto base = "http://127.0.0.1:" + std::to_string(nginx.port());

  std::size_t bytes = 0;
  int pieces = 0;
  bool all_x = true;
  auto whole = request::to("GET", base + "/large.bin");
  whole.on_body = [&](std::string_view piece) {
    bytes += piece.size();
    ++pieces;
    all_x = all_x && piece.find_first_not_of('x') == std::string_view::npos;
    return true;
  };
  const auto streamed = c->send(whole);
  ASSERT_FALSE(streamed.error) << streamed.message;
  EXPECT_EQ(bytes, 1024U * 1024U);
  EXPECT_GT(pieces, 1) << "handed over as it arrived";
  EXPECT_TRUE(all_x);
  EXPECT_TRUE(streamed.response.body.empty());
  EXPECT_EQ(*streamed.response.find("content-length"), "1048576") << "as sent, not decoded";

  // The reader stops after 100 KiB: the request ends, the connection with it.
  std::size_t taken = 0;
  auto stopped = request::to("GET", base + "/large.bin");
  stopped.on_body = [&](std::string_view piece) {
    taken += piece.size();
    return taken < 100 * 1024;
  };
  const auto cut = c->send(stopped);
  EXPECT_EQ(cut.error, std::errc::operation_canceled);
  EXPECT_EQ(cut.message,
            "GET " + base + "/large.bin: the body's reader (request::on_body) stopped it");
  EXPECT_LT(taken, 200U * 1024U);

  // A redirect followed is not the answer: only /show's body reaches the reader.
  std::string shown;
  auto redirected_request = request::to("GET", base + "/see-other");
  redirected_request.on_body = [&](std::string_view piece) {
    shown.append(piece);
    return true;
  };
  const auto followed = c->send(redirected_request);
  ASSERT_FALSE(followed.error) << followed.message;
  EXPECT_EQ(followed.redirects, 1U);
  EXPECT_EQ(shown, "GET auth=[] cookie=[] type=[] length=[]\n");

  // The limit is back for a request that does not stream.
  const auto kept = c->send(request::to("GET", base + "/large.bin"));
  EXPECT_EQ(kept.error, errc::body_too_large) << kept.message;
}

TEST(http_client_nginx, asks_for_gzip_and_hands_over_the_body_decoded) {
  nginx_server nginx{"    gzip on; gzip_min_length 1; gzip_types application/octet-stream;\n"};
  client_fixture c;
  const auto url = "http://127.0.0.1:" + std::to_string(nginx.port()) + "/large.bin";
  auto decoded = send_url(c, "GET", url);
  ASSERT_FALSE(decoded.error) << decoded.message;
  EXPECT_TRUE(decoded.response.decompressed) << "nginx compressed it: the client asked";
  EXPECT_EQ(decoded.response.body, std::string(1024 * 1024, 'x'));
  EXPECT_EQ(decoded.response.find("content-encoding"), nullptr);
  EXPECT_EQ(decoded.response.find("content-length"), nullptr);

  // A request with its own Accept-Encoding gets the bytes as they came.
  auto raw = send_url(c, "GET", url, {}, {{"Accept-Encoding", "gzip"}});
  ASSERT_FALSE(raw.error) << raw.message;
  EXPECT_FALSE(raw.response.decompressed);
  ASSERT_NE(raw.response.find("content-encoding"), nullptr);
  EXPECT_EQ(*raw.response.find("content-encoding"), "gzip");
  ASSERT_GE(raw.response.body.size(), 2U);
  EXPECT_EQ(raw.response.body.substr(0, 2), "\x1f\x8b") << "gzip's magic bytes";
  EXPECT_LT(raw.response.body.size(), 64U * 1024);

  // Turned off, the client does not ask and nginx does not compress.
  client_options plain_options;
  plain_options.decompress = false;
  client_fixture plain{plain_options};
  auto as_is = send_url(plain, "GET", url);
  ASSERT_FALSE(as_is.error) << as_is.message;
  EXPECT_FALSE(as_is.response.decompressed);
  EXPECT_EQ(as_is.response.find("content-encoding"), nullptr);
  EXPECT_EQ(as_is.response.body.size(), 1024U * 1024U);
}

} // namespace
} // namespace tether::http
