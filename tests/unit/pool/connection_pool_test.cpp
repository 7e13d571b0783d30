#include "tether/pool/connection_pool.hpp"

#include <gtest/gtest.h>

#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/strand.hpp>
#include <asio/this_coro.hpp>
#include <optional>
#include <thread>

#include "fake_connector.hpp"
#include "manual_timer.hpp"

namespace tether::pool {
namespace {

using testing::fake_connector;
using testing::fake_connector_state;
using testing::manual_timer;
using testing::run_until;
using pool_type = connection_pool<fake_connector, asio::io_context::executor_type,
                                  manual_timer<asio::io_context::executor_type>>;
using acquire_result = pool_type::acquire_result;

struct recording_observer : pool_observer {
  int acquired = 0, timeouts = 0, released = 0, connected = 0, leaks = 0, leaks_returned = 0;
  std::vector<std::error_code> connect_failures;
  std::vector<std::error_code> fast_failures; // acquires answered with the last failure
  std::vector<close_reason> closed;
  std::optional<std::source_location> leak_site;
  clock::duration leak_held{};

  void on_acquired(clock::duration) override { ++acquired; }
  void on_acquire_timeout() override { ++timeouts; }
  void on_released(clock::duration) override { ++released; }
  void on_connected(clock::duration) override { ++connected; }
  void on_connect_failed(std::error_code ec) override { connect_failures.push_back(ec); }
  void on_acquire_failed_fast(std::error_code ec) override { fast_failures.push_back(ec); }
  void on_closed(close_reason r) override { closed.push_back(r); }
  void on_leak(const std::source_location& at, clock::duration held) override {
    ++leaks;
    leak_site = at;
    leak_held = held;
  }
  void on_leak_returned(const std::source_location&, clock::duration) override { ++leaks_returned; }
};

struct pool_test : ::testing::Test {
  manual_clock clock;
  std::shared_ptr<fake_connector_state> state = std::make_shared<fake_connector_state>();
  std::shared_ptr<recording_observer> observer = std::make_shared<recording_observer>();
  pool_options options;
  // Declared last so it goes first: its suspended coroutines (and the pools they keep alive)
  // are destroyed while the clock and the connector state they point to still exist.
  asio::io_context io;

  pool_test() { testing::manual_asio_clock::source = &clock; }

  std::shared_ptr<pool_type> make(bool start = true) {
    auto p =
        pool_type::create(io.get_executor(), fake_connector{state}, options, clock, observer, 7);
    if (start) {
      p->start();
    }
    return p;
  }

  // Starts an acquire on the io_context; the result lands in the returned slot.
  std::shared_ptr<std::optional<acquire_result>>
  acquire(const std::shared_ptr<pool_type>& p,
          std::optional<clock::duration> timeout = std::nullopt) {
    auto slot = std::make_shared<std::optional<acquire_result>>();
    asio::co_spawn(io, acquire_into(p, slot, timeout), asio::detached);
    return slot;
  }

  // A function, not a capturing lambda: g++ 12 mishandles by-value captures of a lambda
  // coroutine handed to co_spawn.
  static asio::awaitable<void> acquire_into(std::shared_ptr<pool_type> p,
                                            std::shared_ptr<std::optional<acquire_result>> slot,
                                            std::optional<clock::duration> timeout) {
    *slot = co_await p->async_acquire(timeout);
  }

  // A pool of one idle connection whose keepalive probe is under way (held until
  // state->release_validations()); null if it did not get there.
  std::shared_ptr<pool_type> pool_with_a_probe_under_way() {
    options.max_size = 1;
    options.keepalive_interval = std::chrono::minutes{2};
    options.max_lifetime = std::chrono::seconds{0};
    auto p = make();
    if (!run_until(io, [&] { return p->stats().idle == 1; })) {
      return nullptr;
    }
    state->hold_validations = true;
    clock.advance(std::chrono::minutes{2});
    if (!run_until(io, [&] { return state->held.size() == 1; })) {
      return nullptr;
    }
    return p;
  }

  acquire_result acquire_now(const std::shared_ptr<pool_type>& p) {
    auto slot = acquire(p);
    EXPECT_TRUE(run_until(io, [&] { return slot->has_value(); }));
    return std::move(**slot);
  }

  void settle() {
    io.restart();
    io.poll();
  }
};

TEST_F(pool_test, prefills_min_idle_at_start) {
  options.max_size = 5;
  options.min_idle = 3;
  auto p = make();
  ASSERT_TRUE(run_until(io, [&] { return p->stats().idle == 3; }));
  EXPECT_EQ(state->opened, 3);
  EXPECT_EQ(p->stats().total, 3U);
  EXPECT_EQ(p->stats().max, 5U);
  EXPECT_EQ(p->stats().min_idle, 3U);
}

TEST_F(pool_test, reuses_the_most_recently_returned_connection) {
  options.max_size = 3;
  auto p = make();
  ASSERT_TRUE(run_until(io, [&] { return p->stats().idle == 3; }));
  auto a = acquire_now(p);
  ASSERT_FALSE(a.error);
  const int id = a.connection->id;
  a.connection.reset();
  auto b = acquire_now(p);
  EXPECT_EQ(b.connection->id, id);
  EXPECT_EQ(state->opened, 3);
  EXPECT_EQ(p->stats().active, 1U);
  EXPECT_EQ(p->stats().idle, 2U);
}

TEST_F(pool_test, waiters_are_served_in_arrival_order) {
  options.max_size = 1;
  auto p = make();
  auto first = acquire_now(p);
  auto w1 = acquire(p);
  auto w2 = acquire(p);
  auto w3 = acquire(p);
  settle();
  EXPECT_EQ(p->stats().pending, 3U);
  first.connection.reset();
  ASSERT_TRUE(run_until(io, [&] { return w1->has_value(); }));
  EXPECT_FALSE(w2->has_value());
  (*w1)->connection.reset();
  ASSERT_TRUE(run_until(io, [&] { return w2->has_value(); }));
  EXPECT_FALSE(w3->has_value());
  (*w2)->connection.reset();
  ASSERT_TRUE(run_until(io, [&] { return w3->has_value(); }));
  EXPECT_EQ(state->opened, 1);
  EXPECT_EQ(p->stats().pending, 0U);
}

TEST_F(pool_test, acquire_times_out_with_pool_timeout) {
  options.max_size = 1;
  options.acquire_timeout = 30s;
  auto p = make();
  auto held = acquire_now(p);
  auto waiting = acquire(p);
  settle();
  clock.advance(29s);
  settle();
  EXPECT_FALSE(waiting->has_value());
  clock.advance(1s);
  ASSERT_TRUE(run_until(io, [&] { return waiting->has_value(); }));
  EXPECT_EQ((*waiting)->error, make_error_code(errc::pool_timeout));
  EXPECT_FALSE((*waiting)->connection);
  EXPECT_EQ(observer->timeouts, 1);
  EXPECT_EQ(p->stats().pending, 0U);
}

TEST_F(pool_test, a_cancelled_acquire_leaves_the_queue) {
  using namespace asio::experimental::awaitable_operators;
  options.max_size = 1;
  auto p = make();
  auto held = acquire_now(p);
  std::optional<std::error_code> result;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        manual_timer<> give_up{io.get_executor()};
        give_up.expires_after(1s);
        auto r = co_await (p->async_acquire() || give_up.async_wait(asio::use_awaitable));
        result =
            r.index() == 0 ? std::get<0>(r).error : make_error_code(std::errc::operation_canceled);
      },
      asio::detached);
  settle();
  EXPECT_EQ(p->stats().pending, 1U);
  clock.advance(1s);
  ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }));
  EXPECT_EQ(*result, make_error_code(std::errc::operation_canceled));
  EXPECT_EQ(p->stats().pending, 0U);
  held.connection.reset();
  settle();
  EXPECT_EQ(p->stats().idle, 1U)
      << "the returned connection went idle, not to the cancelled waiter";
}

TEST_F(pool_test, a_broken_connection_is_discarded_never_handed_out_again) {
  options.max_size = 1;
  auto p = make();
  auto a = acquire_now(p);
  auto* broken = &*a.connection;
  const int broken_id = a.connection->id;
  a.connection.mark_broken();
  a.connection.reset(); // not on the pool's thread: posted back
  settle();
  EXPECT_EQ(observer->closed, std::vector<close_reason>{close_reason::broken});
  EXPECT_TRUE(state->live.count(broken) == 0);
  auto b = acquire_now(p);
  ASSERT_FALSE(b.error);
  EXPECT_NE(b.connection->id, broken_id);
}

TEST_F(pool_test, a_connection_the_connector_will_not_reuse_is_closed_on_return) {
  options.max_size = 1;
  auto p = make();
  auto a = acquire_now(p);
  a.connection->reusable = false; // say, a database session left inside a transaction
  a.connection.reset();
  settle();
  EXPECT_EQ(observer->closed, std::vector<close_reason>{close_reason::not_reusable});
  EXPECT_EQ(p->stats().total, 0U);
}

TEST_F(pool_test, a_returned_connection_that_needs_a_reset_is_reset_before_anyone_gets_it) {
  options.max_size = 1;
  state->hold_resets = true;
  auto p = make();
  auto a = acquire_now(p);
  const int id = a.connection->id;
  a.connection->dirty = true; // say, a session with a transaction left open
  a.connection.reset();
  settle();
  EXPECT_EQ(state->resets, 1);
  EXPECT_EQ(p->stats().idle, 0U) << "not idle while the reset runs";
  EXPECT_EQ(p->stats().active, 1U);
  auto waiting = acquire(p);
  settle();
  EXPECT_FALSE(waiting->has_value()) << "handed out before its reset ended";
  state->release_validations();
  ASSERT_TRUE(run_until(io, [&] { return waiting->has_value(); }));
  ASSERT_FALSE((*waiting)->error);
  EXPECT_EQ((*waiting)->connection->id, id) << "the reset connection, not a new one";
  EXPECT_FALSE((*waiting)->connection->dirty);
  EXPECT_TRUE(observer->closed.empty());
  EXPECT_EQ(state->opened, 1);
}

TEST_F(pool_test, a_clean_connection_is_pooled_without_a_reset) {
  options.max_size = 1;
  auto p = make();
  acquire_now(p).connection.reset();
  settle();
  EXPECT_EQ(state->resets, 0);
  EXPECT_EQ(p->stats().idle, 1U);
}

TEST_F(pool_test, a_connection_whose_reset_fails_is_closed_and_replaced_for_a_waiter) {
  options.max_size = 1;
  state->reset_result = false;
  auto p = make();
  auto a = acquire_now(p);
  a.connection->dirty = true;
  auto waiting = acquire(p);
  settle();
  a.connection.reset();
  ASSERT_TRUE(run_until(io, [&] { return waiting->has_value(); }));
  ASSERT_FALSE((*waiting)->error);
  EXPECT_EQ((*waiting)->connection->id, 2);
  EXPECT_EQ(observer->closed, std::vector<close_reason>{close_reason::reset_failed});
}

TEST_F(pool_test, a_pool_closed_during_a_reset_closes_the_connection_when_it_ends) {
  options.max_size = 1;
  state->hold_resets = true;
  auto p = make();
  auto a = acquire_now(p);
  a.connection->dirty = true;
  a.connection.reset();
  settle();
  auto closed = std::make_shared<bool>(false);
  asio::co_spawn(
      io,
      [](std::shared_ptr<pool_type> pl, std::shared_ptr<bool> done) -> asio::awaitable<void> {
        co_await pl->async_close();
        *done = true;
      }(p, closed),
      asio::detached);
  settle();
  state->release_validations();
  ASSERT_TRUE(run_until(io, [&] { return *closed; }));
  EXPECT_EQ(observer->closed, std::vector<close_reason>{close_reason::pool_closed});
  EXPECT_EQ(state->live.size(), 0U);
  EXPECT_EQ(p->stats().total, 0U);
}

TEST_F(pool_test, a_connection_whose_peer_left_is_not_handed_out) {
  options.max_size = 2;
  auto p = make();
  ASSERT_TRUE(run_until(io, [&] { return p->stats().idle == 2; }));
  for (auto* c : state->live) {
    c->alive = false; // the server closed both while they sat idle
  }
  auto a = acquire_now(p);
  ASSERT_FALSE(a.error);
  EXPECT_TRUE(a.connection->alive);
  EXPECT_EQ(a.connection->id, 3);
  EXPECT_EQ(std::count(observer->closed.begin(), observer->closed.end(), close_reason::not_usable),
            2);
}

TEST_F(pool_test, idle_connections_above_min_idle_retire_after_idle_timeout) {
  options.max_size = 4;
  options.min_idle = 1;
  options.idle_timeout = 10min;
  auto p = make();
  std::vector<acquire_result> leases;
  for (int i = 0; i < 4; ++i) {
    leases.push_back(acquire_now(p));
  }
  leases.clear();
  settle();
  EXPECT_EQ(p->stats().idle, 4U);
  clock.advance(9min);
  ASSERT_TRUE(run_until(io, [&] { return p->stats().idle == 4; }));
  clock.advance(1min + 1s);
  ASSERT_TRUE(run_until(io, [&] { return p->stats().idle == 1; }));
  EXPECT_EQ(
      std::count(observer->closed.begin(), observer->closed.end(), close_reason::idle_timeout), 3);
}

TEST_F(pool_test, a_fixed_pool_keeps_its_idle_connections) {
  options.max_size = 2; // min_idle defaults to max_size: idle_timeout does not apply
  options.idle_timeout = 1min;
  options.max_lifetime = 0s;
  auto p = make();
  ASSERT_TRUE(run_until(io, [&] { return p->stats().idle == 2; }));
  clock.advance(1h);
  settle();
  clock.advance(1s);
  settle();
  EXPECT_EQ(p->stats().idle, 2U);
  EXPECT_EQ(state->opened, 2);
}

TEST_F(pool_test, connections_retire_at_their_jittered_lifetime_and_are_replaced) {
  options.max_size = 20;
  options.max_lifetime = 1000s;
  auto p = make();
  ASSERT_TRUE(run_until(io, [&] { return p->stats().idle == 20; }));
  clock.advance(975s - 1s); // every lifetime lies in [975 s, 1000 s]
  settle();
  EXPECT_EQ(state->opened, 20);
  clock.advance(26s);
  ASSERT_TRUE(run_until(io, [&] { return state->opened == 40 && p->stats().idle == 20; }));
  EXPECT_EQ(
      std::count(observer->closed.begin(), observer->closed.end(), close_reason::max_lifetime), 20);
}

TEST_F(pool_test, lifetimes_are_jittered_so_connections_do_not_expire_together) {
  options.max_size = 20;
  options.max_lifetime = 1000s;
  options.housekeeping_period = 100ms;
  auto p = make();
  ASSERT_TRUE(run_until(io, [&] { return p->stats().idle == 20; }));
  clock.advance(975s);
  int steps = 0;
  int distinct_moments = 0;
  int last_closed = 0;
  while (observer->closed.size() < 20 && steps++ < 300) {
    clock.advance(100ms);
    run_until(
        io, [&] { return false; }, std::chrono::milliseconds{2});
    if (static_cast<int>(observer->closed.size()) != last_closed) {
      ++distinct_moments;
      last_closed = static_cast<int>(observer->closed.size());
    }
  }
  EXPECT_EQ(observer->closed.size(), 20U);
  EXPECT_GT(distinct_moments, 5) << "20 connections made together expired at too few moments";
}

TEST_F(pool_test, a_connection_past_its_lifetime_while_leased_closes_on_return) {
  options.max_size = 1;
  options.max_lifetime = 100s;
  auto p = make();
  auto a = acquire_now(p);
  clock.advance(101s);
  settle();
  a.connection.reset();
  settle();
  EXPECT_EQ(observer->closed, std::vector<close_reason>{close_reason::max_lifetime});
}

TEST_F(pool_test, keepalive_probes_idle_connections_and_drops_dead_ones) {
  options.max_size = 2;
  options.keepalive_interval = 2min;
  options.max_lifetime = 0s;
  auto p = make();
  ASSERT_TRUE(run_until(io, [&] { return p->stats().idle == 2; }));
  clock.advance(2min);
  ASSERT_TRUE(run_until(io, [&] { return state->validations == 2 && p->stats().idle == 2; }));
  (*state->live.begin())->alive = false;
  clock.advance(2min);
  ASSERT_TRUE(run_until(io, [&] { return state->validations == 4; }));
  ASSERT_TRUE(run_until(io, [&] { return p->stats().idle == 2 && state->opened == 3; }));
  EXPECT_EQ(observer->closed, std::vector<close_reason>{close_reason::keepalive_failed});
}

TEST_F(pool_test, a_connection_probed_while_the_pool_is_evicted_is_closed_not_kept) {
  auto p = pool_with_a_probe_under_way();
  ASSERT_TRUE(p);
  p->evict_all(); // its host was taken out of service meanwhile
  state->release_validations();
  ASSERT_TRUE(run_until(io, [&] { return state->closed == 1; }));
  EXPECT_EQ(observer->closed, std::vector<close_reason>{close_reason::evicted});
  auto a = acquire_now(p);
  ASSERT_FALSE(a.error);
  EXPECT_EQ(a.connection->id, 2) << "a fresh connection, not the evicted one";
}

TEST_F(pool_test, a_detached_connection_is_closed_on_return_as_detached_not_broken) {
  options.max_size = 1;
  options.min_idle = 0;
  auto p = make();
  auto a = acquire_now(p);
  const int first = a.connection->id;
  a.connection.detach(); // its socket moved out for good (a tunnel)
  a.connection.reset();
  settle();
  EXPECT_EQ(observer->closed, std::vector<close_reason>{close_reason::detached});
  EXPECT_EQ(p->stats().total, 0U);
  auto b = acquire_now(p);
  ASSERT_FALSE(b.error);
  EXPECT_NE(b.connection->id, first);
}

TEST_F(pool_test, a_retired_pool_lends_to_work_in_flight_but_keeps_nothing_idle) {
  options.max_size = 2;
  options.min_idle = 2;
  auto p = make();
  ASSERT_TRUE(run_until(io, [&] { return p->stats().idle == 2; }));
  auto a = acquire_now(p);
  const int first = a.connection->id;
  p->retire(); // its peer left the configuration
  settle();
  EXPECT_EQ(observer->closed, std::vector<close_reason>{close_reason::retired});
  EXPECT_EQ(p->stats().idle, 0U);
  EXPECT_EQ(p->stats().min_idle, 0U);
  // Work in flight still borrows: a new connection, and one handed from lease to waiter.
  auto b = acquire_now(p);
  ASSERT_FALSE(b.error);
  auto waiting = acquire(p);
  settle();
  ASSERT_FALSE(waiting->has_value()); // both connections leased
  a.connection.reset();
  ASSERT_TRUE(run_until(io, [&] { return waiting->has_value(); }));
  ASSERT_FALSE((*waiting)->error);
  EXPECT_EQ((*waiting)->connection->id, first) << "handed to the waiter, not closed";
  EXPECT_EQ(observer->closed.size(), 1U);
  // Given back with nobody waiting: closed, not kept; and no prefill replaces them.
  b.connection.reset();
  (*waiting)->connection.reset();
  settle();
  EXPECT_EQ(observer->closed, std::vector<close_reason>(3, close_reason::retired));
  const int opened = state->opened;
  clock.advance(10min);
  settle();
  EXPECT_EQ(state->opened, opened);
  EXPECT_EQ(p->stats().total, 0U);
}

TEST_F(pool_test, connects_under_way_when_the_pool_retires_are_closed_when_they_land) {
  options.max_size = 2;
  options.min_idle = 2;
  state->suspend_on_connect = true;
  auto p = make();
  // One handler at a time, until the prefill's two connects are under way.
  for (int i = 0; i < 100 && p->stats().connecting < 2; ++i) {
    io.restart();
    io.run_one();
  }
  ASSERT_EQ(p->stats().connecting, 2U);
  ASSERT_EQ(state->opened, 0);
  p->retire();
  ASSERT_TRUE(run_until(io, [&] { return state->closed == 2; }));
  EXPECT_EQ(state->opened, 2);
  EXPECT_EQ(observer->closed, std::vector<close_reason>(2, close_reason::retired));
  EXPECT_EQ(p->stats().total, 0U);
}

TEST_F(pool_test, a_connection_resetting_when_the_pool_retires_is_closed_after_its_reset) {
  options.max_size = 1;
  options.min_idle = 0;
  auto p = make();
  auto a = acquire_now(p);
  a.connection->dirty = true; // it needs a reset before it is pooled again
  state->hold_resets = true;
  a.connection.reset();
  ASSERT_TRUE(run_until(io, [&] { return state->held.size() == 1; })); // its reset under way
  p->retire();
  state->release_validations();
  ASSERT_TRUE(run_until(io, [&] { return state->closed == 1; }));
  EXPECT_EQ(state->resets, 1);
  EXPECT_EQ(observer->closed, std::vector<close_reason>{close_reason::retired});
}

TEST_F(pool_test, a_connection_probed_while_the_pool_retires_is_closed_not_kept) {
  auto p = pool_with_a_probe_under_way();
  ASSERT_TRUE(p);
  p->retire();
  state->release_validations();
  ASSERT_TRUE(run_until(io, [&] { return state->closed == 1; }));
  EXPECT_EQ(observer->closed, std::vector<close_reason>{close_reason::retired});
  EXPECT_EQ(p->stats().total, 0U);
}

TEST_F(pool_test, a_connection_validated_for_a_borrower_while_the_pool_is_evicted_is_not_lent) {
  options.max_size = 1;
  options.min_idle = 0;
  options.validate_on_borrow = true;
  auto p = make();
  acquire_now(p); // made and given back
  settle();
  clock.advance(1s); // past the 500 ms bypass window: the next borrow validates it
  state->hold_validations = true;
  auto slot = acquire(p);
  ASSERT_TRUE(run_until(io, [&] { return state->held.size() == 1; }));
  p->evict_all();
  state->release_validations();
  ASSERT_TRUE(run_until(io, [&] { return slot->has_value(); }));
  ASSERT_FALSE((*slot)->error) << (*slot)->error.message();
  EXPECT_EQ((*slot)->connection->id, 2) << "a fresh connection, not the evicted one";
  EXPECT_EQ(observer->closed, std::vector<close_reason>{close_reason::evicted});
}

TEST_F(pool_test, validation_on_borrow_discards_connections_that_fail_it) {
  options.max_size = 2;
  options.min_idle = 0;
  options.validate_on_borrow = true;
  auto p = make();
  {
    auto a = acquire_now(p);
    ASSERT_FALSE(a.error);
  }
  settle();
  EXPECT_EQ(state->validations, 0) << "a new connection is not validated";
  clock.advance(1s); // past the 500 ms bypass window
  state->validate_result = false;
  auto slot = acquire(p);
  ASSERT_TRUE(run_until(io, [&] { return state->validations == 1; }));
  state->validate_result = true;
  ASSERT_TRUE(run_until(io, [&] { return slot->has_value(); }));
  EXPECT_FALSE((*slot)->error);
  EXPECT_EQ((*slot)->connection->id, 2);
  EXPECT_EQ(observer->closed, std::vector<close_reason>{close_reason::validation_failed});
}

TEST_F(pool_test, connect_failures_reach_waiters_and_back_off) {
  options.max_size = 2;
  options.min_idle = 0;
  auto p = make();
  state->failures = {make_error_code(std::errc::connection_refused),
                     make_error_code(std::errc::connection_refused)};
  auto first = acquire(p);
  ASSERT_TRUE(run_until(io, [&] { return first->has_value(); }));
  EXPECT_EQ((*first)->error, make_error_code(std::errc::connection_refused))
      << "the waiter learns the real cause, not a bare timeout";

  // Within the backoff (1 s after the first failure), a new acquire does not connect again: with
  // nothing open it fails at once with the cause.
  auto second = acquire(p);
  ASSERT_TRUE(run_until(io, [&] { return second->has_value(); }));
  EXPECT_EQ((*second)->error, make_error_code(std::errc::connection_refused));
  EXPECT_EQ(observer->connect_failures.size(), 1U);
  // Reported as what it is, so that every refused acquire is seen in the metrics: one dialled
  // and refused, one answered from the backoff.
  EXPECT_EQ(observer->fast_failures,
            std::vector<std::error_code>{make_error_code(std::errc::connection_refused)});
  clock.advance(1s);
  auto after_backoff = acquire(p);
  ASSERT_TRUE(run_until(io, [&] { return after_backoff->has_value(); }));
  EXPECT_EQ((*after_backoff)->error, make_error_code(std::errc::connection_refused));
  EXPECT_EQ(observer->connect_failures.size(), 2U);

  // The next wait is about 1.6 s (+-20 %): no attempt at 1.2 s, one by 2 s.
  clock.advance(1200ms);
  auto early = acquire(p);
  ASSERT_TRUE(run_until(io, [&] { return early->has_value(); }));
  EXPECT_EQ((*early)->error, make_error_code(std::errc::connection_refused));
  EXPECT_EQ(observer->connect_failures.size(), 2U) << "no attempt inside the backoff";
  clock.advance(800ms);
  auto third = acquire(p);
  ASSERT_TRUE(run_until(io, [&] { return third->has_value(); }));
  EXPECT_FALSE((*third)->error);
  EXPECT_EQ(state->opened, 1);
}

TEST_F(pool_test, a_connect_refused_by_a_shared_limit_waits_for_a_unit_to_come_back) {
  options.max_size = 2;
  options.min_idle = 0;
  options.acquire_timeout = 30s;
  auto p = make();
  int asked_to_shed = 0;
  p->on_overloaded([&asked_to_shed] { ++asked_to_shed; });
  state->failures = {make_error_code(errc::overloaded)};
  auto waiting = acquire(p);
  settle();
  EXPECT_FALSE(waiting->has_value()) << "no failure handed to the waiter, and no backoff";
  EXPECT_EQ(asked_to_shed, 1) << "the others sharing the limit are asked to give a unit back";
  EXPECT_EQ(p->stats().pending, 1U);
  // A unit comes back elsewhere: the waiter connects now, not at its timeout.
  p->wake_waiters();
  ASSERT_TRUE(run_until(io, [&] { return waiting->has_value(); }));
  EXPECT_FALSE((*waiting)->error);
  EXPECT_EQ(state->opened, 1);
  // With none coming back, the wait ends at the acquire timeout (the housekeeper's connects
  // meet the limit too).
  state->failures.assign(100, make_error_code(errc::overloaded));
  auto second = acquire(p);
  settle();
  clock.advance(30s);
  ASSERT_TRUE(run_until(io, [&] { return second->has_value(); }));
  EXPECT_EQ((*second)->error, make_error_code(errc::pool_timeout));
}

TEST_F(pool_test, shed_idle_closes_the_least_recently_used_idle_connection) {
  options.max_size = 3;
  options.min_idle = 0;
  auto p = make();
  auto a = acquire_now(p);
  auto b = acquire_now(p);
  const int first_back = a.connection->id;
  a.connection.reset(); // the least recently used
  b.connection.reset();
  settle();
  ASSERT_EQ(p->stats().idle, 2U);
  p->shed_idle();
  settle();
  EXPECT_EQ(p->stats().idle, 1U);
  EXPECT_EQ(observer->closed, std::vector<close_reason>{close_reason::shed});
  auto c = acquire_now(p);
  EXPECT_NE(c.connection->id, first_back);
  p->shed_idle(); // nothing idle: nothing happens
  settle();
  EXPECT_EQ(observer->closed.size(), 1U);
}

TEST_F(pool_test, connects_that_fail_together_take_one_step_of_backoff) {
  options.max_size = 3;             // prefill of 3 to a host that refuses all three
  state->suspend_on_connect = true; // like a real connect: the three are in flight together
  state->failures = {make_error_code(std::errc::connection_refused),
                     make_error_code(std::errc::connection_refused),
                     make_error_code(std::errc::connection_refused)};
  auto p = make();
  ASSERT_TRUE(run_until(io, [&] { return observer->connect_failures.size() == 3; }));
  settle();
  EXPECT_EQ(state->opened, 0);
  // One step (1 s), not three (1 s * 1.6 * 1.6): the refill comes back after a second.
  clock.advance(1s);
  ASSERT_TRUE(run_until(io, [&] { return p->stats().idle == 3; }));
  EXPECT_EQ(state->opened, 3);
}

TEST_F(pool_test, a_lease_held_too_long_is_reported_once_with_where_it_was_taken) {
  options.max_size = 1;
  options.leak_threshold = 10s;
  auto p = make();
  std::optional<acquire_result> leaked;
  std::uint_least32_t line = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        // clang-format off
        line = std::source_location::current().line(); leaked = co_await p->async_acquire();
        // clang-format on
      },
      asio::detached);
  ASSERT_TRUE(run_until(io, [&] { return leaked.has_value(); }));
  clock.advance(9s);
  settle();
  EXPECT_EQ(observer->leaks, 0);
  clock.advance(2s);
  ASSERT_TRUE(run_until(io, [&] { return observer->leaks == 1; }));
  ASSERT_TRUE(observer->leak_site.has_value());
  EXPECT_EQ(observer->leak_site->line(), line);
  EXPECT_NE(std::string{observer->leak_site->file_name()}.find("connection_pool_test.cpp"),
            std::string::npos);
  EXPECT_GE(observer->leak_held, 10s);
  clock.advance(30s);
  settle();
  clock.advance(1s);
  settle();
  EXPECT_EQ(observer->leaks, 1) << "reported once";
  leaked->connection.reset();
  settle();
  EXPECT_EQ(observer->leaks_returned, 1);
}

TEST_F(pool_test, close_refuses_waiters_drains_leases_then_closes_the_rest) {
  options.max_size = 3;
  options.drain_timeout = 10s;
  auto p = make();
  ASSERT_TRUE(run_until(io, [&] { return p->stats().idle == 3; }));
  auto returned = acquire_now(p);
  auto kept = acquire_now(p);
  auto* kept_connection = &*kept.connection;
  bool closed = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await p->async_close();
        closed = true;
      },
      asio::detached);
  settle();
  EXPECT_EQ(p->stats().idle, 0U) << "idle connections close at once";
  auto late = acquire(p);
  ASSERT_TRUE(run_until(io, [&] { return late->has_value(); }));
  EXPECT_EQ((*late)->error, make_error_code(errc::pool_closed));
  returned.connection.reset();
  settle();
  EXPECT_FALSE(closed);
  clock.advance(10s);
  ASSERT_TRUE(run_until(io, [&] { return closed; }));
  EXPECT_TRUE(kept_connection->closed) << "a lease that did not come home is closed under it";
  kept.connection.reset();
  settle();
  EXPECT_TRUE(state->live.empty());
}

TEST_F(pool_test, blocking_acquire_works_from_another_thread_and_refuses_on_the_pool_thread) {
  options.max_size = 1;
  auto p = make();
  auto work = asio::make_work_guard(io);
  std::thread runner{[&] { io.run(); }};
  auto result = p->acquire(5s);
  EXPECT_FALSE(result.error);
  ASSERT_TRUE(result.connection);
  result.connection.reset(); // posts back to the pool's thread
  std::promise<std::error_code> on_pool_thread;
  asio::post(io, [&] { on_pool_thread.set_value(p->acquire(1s).error); });
  EXPECT_EQ(on_pool_thread.get_future().get(), make_error_code(errc::blocking_on_worker));
  work.reset();
  io.stop();
  runner.join();
}

TEST_F(pool_test, is_made_from_the_executor_a_coroutine_has) {
  // `co_await asio::this_coro::executor` gives an any_io_executor: a pool is made from it when
  // it is an io_context's, and refused, saying why, when it is not.
  std::shared_ptr<pool_type> made;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        made = pool_type::create(co_await asio::this_coro::executor, fake_connector{state}, options,
                                 clock, observer, 7);
      },
      asio::detached);
  ASSERT_TRUE(run_until(io, [&] { return made != nullptr; }));
  EXPECT_EQ(made->get_executor(), io.get_executor());

  const asio::any_io_executor strand = asio::make_strand(io);
  try {
    (void)pool_type::create(strand, fake_connector{state}, options, clock, observer, 7);
    ADD_FAILURE() << "a strand was taken for an io_context's executor";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string{e.what()},
              "pool::connection_pool::create: the executor is not an io_context's (give "
              "io.get_executor(), or the executor of a coroutine spawned on an io_context)");
  }
}

} // namespace
} // namespace tether::pool
