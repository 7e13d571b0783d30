// The attempt loop every user of the upstream layer runs (the HTTP client, the proxy): on a fake
// connector and a manual clock, with a scripted exchange in place of HTTP. Each rule is tested
// once here, for both users; no sockets.
#include "tether/upstream/attempt_loop.hpp"

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <gtest/gtest.h>

#include "tether/core/detached.hpp"

#include "fake_connector.hpp"
#include "scripted_random.hpp"

namespace tether::upstream {
namespace {

using namespace std::chrono_literals;
using resilience::attempt_outcome;
using resilience::attempt_result;
using resilience::give_up_reason;
using resilience::retry_on;
using testing::fake_connector;

using fake_cluster = cluster<fake_connector>;
using fake_attempt = attempt<fake_connector>;

/// What the upstream does for one attempt: answers with a status (judged at its head), or fails
/// before any response (a reset, a timeout), or sends a response that breaks the protocol.
struct step {
  int status = 0; ///< 0: no response
  attempt_result error = attempt_result::reset;
  bool malformed = false;
  std::optional<clock::duration> retry_after;
};

step answer(int status, std::optional<clock::duration> retry_after = std::nullopt) {
  return {status, attempt_result::http_status, false, retry_after};
}
step fail(attempt_result r) {
  return {0, r, false, std::nullopt};
}

/// A scripted exchange: it plays `script` in order and records what it saw.
struct scripted_exchange {
  explicit scripted_exchange(std::deque<step> steps = {}) : script{std::move(steps)} {}

  std::deque<step> script;
  std::vector<std::string> hosts; ///< the host of each exchange
  std::vector<bool> reused;       ///< whether its connection had served a request before
  std::vector<clock::duration> waits;
  std::vector<std::string> retried; ///< on_retry's hosts
  std::vector<std::string> replayed;
  manual_clock* time = nullptr;
  bool keep_connection = true; ///< an answered connection goes back to its pool

  asio::awaitable<exchange_end> exchange(fake_attempt& a) {
    hosts.push_back(a.target().name());
    reused.push_back(a.reused());
    exchange_end r;
    const step s = script.front();
    script.pop_front();
    if (s.status != 0) {
      if (const auto d = a.at_response(attempt_outcome::from_status(s.status, s.retry_after));
          d && d->retry) {
        r.how = exchange_end::kind::retry;
        r.delay = d->delay;
        co_return r;
      }
      if (!keep_connection) {
        a.lease().mark_broken();
      }
      r.how = exchange_end::kind::answered;
      co_return r;
    }
    a.lease().mark_broken();
    r.outcome.result = s.malformed ? attempt_result::http_status : s.error;
    r.outcome.status = s.malformed ? 502 : 0;
    r.malformed = s.malformed;
    r.failure = "scripted";
    co_return r;
  }
  asio::awaitable<bool> back_off(clock::duration d) {
    waits.push_back(d);
    time->advance(d); // the wait, on the manual clock
    co_return true;
  }
  void on_retry(const host<fake_connector>& h, const exchange_end& /*r*/) {
    retried.push_back(h.name());
  }
  void on_replay(const host<fake_connector>& h) { replayed.push_back(h.name()); }
};

/// A cluster of fake hosts on one io_context, with counters to read.
struct fixture {
  explicit fixture(cluster_options options, std::size_t hosts = 2,
                   pool::pool_options pool_options = small_pool()) {
    upstream = std::make_unique<fake_cluster>(std::move(options), clock);
    for (std::size_t i = 0; i < hosts; ++i) {
      auto& h = upstream->add_host("10.0.0." + std::to_string(i + 1), 80);
      states.push_back(std::make_shared<testing::fake_connector_state>());
      auto p = fake_cluster::host_type::pool_type::create(
          io.get_executor(), fake_connector{states.back()}, pool_options, clock);
      p->start();
      h.pools.push_back(std::move(p));
    }
    auto& s = upstream->series;
    for (std::size_t i = 0; i < s.retries.size(); ++i) {
      s.retries[i] = &registry.counter("tether_test_retries_total", "for the test")
                          .Add({{"reason", retry_reason_names[i]}});
    }
    for (std::size_t i = 0; i < s.overflow.size(); ++i) {
      s.overflow[i] = &registry.counter("tether_test_overflow_total", "for the test")
                           .Add({{"resource", resource_names[i]}});
    }
    s.budget_exhausted = &registry.counter("tether_test_exhausted_total", "for the test").Add({});
    s.stale_resends = &registry.counter("tether_test_stale_total", "for the test").Add({});
    upstream->on_ejection = [this](const fake_cluster::host_type& h) {
      ejected.push_back(h.name());
    };
  }
  fixture(const fixture&) = delete;
  fixture& operator=(const fixture&) = delete;
  ~fixture() {
    for (auto& h : upstream->hosts) {
      h->pools.clear();
    }
  }

  static pool::pool_options small_pool() {
    pool::pool_options o;
    o.max_size = 2;
    o.min_idle = 0;
    return o;
  }

  /// Runs one request's attempts to their end.
  loop_end run(scripted_exchange& ex, const resilience::retry_policy& policy,
               resilience::request_traits traits = {"GET", false, true}) {
    ex.time = &clock;
    attempts tries{{policy, traits, clock.now(), upstream->budget.get(),
                    upstream->limits ? &upstream->limits->retries : nullptr}};
    loop_end end;
    bool done = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          end = co_await attempt_loop(*upstream, tries, ex, {0, clock, random, 1s, clock.now()});
          done = true;
          io.stop(); // the pools' housekeepers would keep it running
        },
        report_exceptions{"a test's attempts"});
    io.restart();
    io.run_for(std::chrono::seconds{5});
    EXPECT_TRUE(done) << "the attempts did not end within 5 s";
    return end;
  }

  double counter(prometheus::Counter* c) const { return c->Value(); }

  manual_clock clock;
  testing::scripted_random random{{0}}; // backoff at its shortest, the first candidate
  asio::io_context io;
  metrics::registry registry;
  std::vector<std::shared_ptr<testing::fake_connector_state>> states;
  std::unique_ptr<fake_cluster> upstream;
  std::vector<std::string> ejected;
};

resilience::retry_policy retry(retry_on on, std::uint32_t max_attempts = 3) {
  resilience::retry_policy p;
  p.conditions = on;
  p.max_attempts = max_attempts;
  return p;
}

cluster_options plain(std::size_t threads = 1) {
  cluster_options o;
  o.name = "c";
  o.threads = threads;
  return o;
}

/// A cluster whose hosts' breakers open at their first failure.
cluster_options breaking() {
  cluster_options o = plain();
  o.breaker = resilience::circuit_breaker_options{};
  o.breaker->minimum_calls = 1;
  o.breaker->window_size = 1;
  return o;
}

TEST(attempt_loop, an_answer_below_500_ends_the_attempts) {
  fixture f{plain()};
  scripted_exchange ex{{answer(404)}};
  const auto end = f.run(ex, retry(retry_on::status_5xx));
  EXPECT_EQ(end.how, loop_end::kind::answered);
  EXPECT_EQ(end.reason, give_up_reason::succeeded);
  EXPECT_EQ(end.passes, 1U);
  EXPECT_EQ(f.upstream->at(0).requests.load(), 1U);
  EXPECT_EQ(f.upstream->at(0).active.load(), 0); // in flight only while it is
}

TEST(attempt_loop, a_refused_connection_is_retried_on_another_host_and_held_against_the_first) {
  cluster_options o = breaking();
  fixture f{std::move(o)};
  f.states[0]->failures.push_back(make_error_code(std::errc::connection_refused));
  scripted_exchange ex{{answer(200)}};
  // A POST too: nothing was sent, so it may go again whatever its method.
  const auto end = f.run(ex, retry(retry_on::refused), {"POST", false, false});
  EXPECT_EQ(end.how, loop_end::kind::answered);
  ASSERT_EQ(ex.hosts.size(), 1U);
  EXPECT_EQ(ex.hosts[0], "10.0.0.2:80");
  EXPECT_EQ(f.counter(f.upstream->series.retries[static_cast<int>(attempt_result::refused)]), 1);
  EXPECT_EQ(f.upstream->at(0).breaker->state(), resilience::breaker_state::open);
  EXPECT_EQ(f.upstream->at(1).breaker->state(), resilience::breaker_state::closed);
}

TEST(attempt_loop, a_503_is_retried_at_its_head_after_its_retry_after) {
  fixture f{plain()};
  scripted_exchange ex{{answer(503, 2s), answer(200)}};
  const auto end = f.run(ex, retry(retry_on::gateway_error));
  EXPECT_EQ(end.how, loop_end::kind::answered);
  ASSERT_EQ(ex.waits.size(), 1U);
  EXPECT_GE(ex.waits[0], 2s); // Retry-After is a floor for the backoff
  EXPECT_EQ(ex.hosts.size(), 2U);
  EXPECT_NE(ex.hosts[0], ex.hosts[1]); // a retry goes elsewhere when it can
  EXPECT_EQ(f.upstream->at(0).failures.load() + f.upstream->at(1).failures.load(), 1U);
}

TEST(attempt_loop, a_response_the_policy_would_retry_is_the_answer_when_attempts_run_out) {
  fixture f{plain()};
  scripted_exchange ex{{answer(503), answer(503)}};
  const auto end = f.run(ex, retry(retry_on::gateway_error, 2));
  EXPECT_EQ(end.how, loop_end::kind::answered);
  EXPECT_EQ(end.reason, give_up_reason::attempts_exhausted);
  EXPECT_EQ(ex.hosts.size(), 2U);
}

TEST(attempt_loop, a_kept_alive_connection_found_closed_is_replaced_once_for_a_get) {
  cluster_options o = plain();
  o.lb = lb_policy::random; // the scripted random source picks host 0 each time
  fixture f{std::move(o)};
  scripted_exchange first{{answer(200)}};
  ASSERT_EQ(f.run(first, retry(retry_on::none, 1)).how, loop_end::kind::answered);
  // The next request gets the pooled connection; the upstream had closed it.
  scripted_exchange ex{{fail(attempt_result::reset), answer(200)}};
  const auto end = f.run(ex, retry(retry_on::none, 1));
  EXPECT_EQ(end.how, loop_end::kind::answered);
  ASSERT_EQ(ex.reused.size(), 2U);
  EXPECT_TRUE(ex.reused[0]);
  EXPECT_FALSE(ex.reused[1]);          // a new connection
  EXPECT_EQ(ex.hosts[0], ex.hosts[1]); // the same host, though another is there: no retry
  EXPECT_EQ(ex.replayed.size(), 1U);
  EXPECT_TRUE(ex.waits.empty()); // not a retry: no backoff
  EXPECT_EQ(f.counter(f.upstream->series.stale_resends), 1);
  EXPECT_EQ(f.upstream->at(0).failures.load(), 0U); // not held against the host
}

TEST(attempt_loop, a_post_on_a_connection_found_closed_is_never_sent_twice) {
  fixture f{plain(), 1};
  scripted_exchange first{{answer(200)}};
  ASSERT_EQ(f.run(first, retry(retry_on::none, 1)).how, loop_end::kind::answered);
  scripted_exchange ex{{fail(attempt_result::reset)}};
  const auto end = f.run(ex, retry(retry_on::reset, 3), {"POST", false, true});
  EXPECT_EQ(end.how, loop_end::kind::gave_up);
  EXPECT_EQ(end.cause, loop_end::why::failed);
  EXPECT_EQ(end.reason, give_up_reason::not_idempotent);
  EXPECT_EQ(ex.hosts.size(), 1U);
  EXPECT_TRUE(ex.replayed.empty());
}

TEST(attempt_loop, a_malformed_response_is_reported_and_never_retried) {
  fixture f{plain()};
  scripted_exchange ex{{step{0, attempt_result::reset, true, std::nullopt}}};
  const auto end = f.run(ex, retry(retry_on::status_5xx | retry_on::reset, 3));
  EXPECT_EQ(end.cause, loop_end::why::failed);
  EXPECT_TRUE(end.malformed);
  EXPECT_EQ(end.reason, give_up_reason::not_retriable);
  EXPECT_EQ(ex.hosts.size(), 1U);
  EXPECT_EQ(f.upstream->at(0).failures.load() + f.upstream->at(1).failures.load(), 1U);
}

TEST(attempt_loop, consecutive_5xx_eject_a_host_for_every_user_of_the_cluster) {
  cluster_options o = plain();
  o.outlier_detection = resilience::outlier_detection_options{};
  o.outlier_detection->consecutive_5xx = 2;
  o.outlier_detection->max_ejection_percent = 50;
  fixture f{std::move(o)};
  // Round robin from host 0: requests 1 and 3 go to it and get 500s.
  for (int i = 0; i < 4; ++i) {
    scripted_exchange ex{{answer(i % 2 == 0 ? 500 : 200)}};
    f.run(ex, retry(retry_on::none, 1));
  }
  ASSERT_EQ(f.ejected.size(), 1U);
  EXPECT_EQ(f.ejected[0], "10.0.0.1:80");
  EXPECT_FALSE(f.upstream->at(0).in_service());
  // Out of service, it gets nothing more.
  scripted_exchange next{{answer(200), answer(200)}};
  f.run(next, retry(retry_on::none, 1));
  scripted_exchange after{{answer(200)}};
  f.run(after, retry(retry_on::none, 1));
  EXPECT_EQ(next.hosts[0], "10.0.0.2:80");
  EXPECT_EQ(after.hosts[0], "10.0.0.2:80");
}

TEST(attempt_loop, a_cluster_taking_over_keeps_the_hosts_that_stay_as_they_are) {
  // A reload that changes only the hosts: host 1 goes, host 3 comes, host 0 (ejected) stays.
  cluster_options o = plain();
  o.outlier_detection = resilience::outlier_detection_options{};
  o.outlier_detection->consecutive_5xx = 2;
  o.outlier_detection->max_ejection_percent = 100; // a second ejection is allowed
  o.limits = resilience::cluster_limits_options{};
  o.budget = resilience::windowed_retry_budget_options{};
  fixture f{o};
  for (int i = 0; i < 4; ++i) {
    scripted_exchange ex{{answer(i % 2 == 0 ? 500 : 200)}};
    f.run(ex, retry(retry_on::none, 1));
  }
  ASSERT_EQ(f.ejected.size(), 1U);

  fake_cluster next{o, f.clock, *f.upstream};
  next.adopt_host(f.upstream->hosts[0]);
  auto& added = next.add_host("10.0.0.3", 80);
  EXPECT_EQ(next.limits, f.upstream->limits);
  EXPECT_EQ(next.budget, f.upstream->budget);
  EXPECT_EQ(next.detector, f.upstream->detector);
  // Until it takes over, the detection counts the running cluster's hosts only.
  EXPECT_EQ(added.outlier, nullptr);
  EXPECT_EQ(next.detector->host_count(), 2U);

  next.take_over(*f.upstream);
  EXPECT_EQ(next.detector->host_count(), 2U); // 10.0.0.1 and 10.0.0.3
  EXPECT_EQ(next.detector->ejected_count(), 1U);
  ASSERT_NE(added.outlier, nullptr);
  // The host that stayed is the same one, ejected still, with its pool and its counts.
  EXPECT_EQ(&next.at(0), &f.upstream->at(0));
  EXPECT_FALSE(next.at(0).in_service());
  EXPECT_EQ(next.at(0).requests.load(), 2U);
  EXPECT_TRUE(next.at(1).in_service());
  // The host that left is out of the detection: its 500s no longer count.
  auto& gone = f.upstream->at(1);
  EXPECT_FALSE(next.detector->report(*gone.outlier, attempt_outcome::from_status(500)));
  EXPECT_FALSE(next.detector->report(*gone.outlier, attempt_outcome::from_status(500)));
  EXPECT_TRUE(gone.in_service());
  next.take_over(*f.upstream); // once only
  EXPECT_EQ(next.detector->host_count(), 2U);
}

TEST(attempt_loop, an_empty_budget_refuses_the_retry_and_says_so) {
  cluster_options o = plain();
  o.budget = resilience::windowed_retry_budget_options{};
  o.budget->min_retries_per_sec = 0;
  o.budget->percent_can_retry = 0;
  fixture f{std::move(o)};
  scripted_exchange ex{{fail(attempt_result::reset)}};
  const auto end = f.run(ex, retry(retry_on::reset, 3));
  EXPECT_EQ(end.reason, give_up_reason::budget_exhausted);
  EXPECT_EQ(f.counter(f.upstream->series.budget_exhausted), 1);
  EXPECT_EQ(ex.hosts.size(), 1U);
}

TEST(attempt_loop, the_retry_threshold_rules_while_no_budget_does) {
  cluster_options o = plain();
  o.limits = resilience::cluster_limits_options{};
  o.limits->max_retries = 0;
  fixture f{std::move(o)};
  scripted_exchange ex{{fail(attempt_result::reset)}};
  const auto end = f.run(ex, retry(retry_on::reset, 3));
  EXPECT_EQ(end.cause, loop_end::why::failed);
  EXPECT_EQ(f.counter(f.upstream->series.overflow[static_cast<int>(resource::retries)]), 1);
  EXPECT_EQ(ex.hosts.size(), 1U);
}

TEST(attempt_loop, the_pending_threshold_refuses_before_anything_is_sent) {
  // (max_connections is counted by the connector, and a request at it waits as pending: the
  // proxy's tests show it with real connections, proxy_test.cpp.)
  cluster_options o = plain();
  o.limits = resilience::cluster_limits_options{};
  o.limits->max_pending_requests = 0;
  fixture f{std::move(o)};
  scripted_exchange ex;
  const auto end = f.run(ex, retry(retry_on::none, 1));
  EXPECT_EQ(end.cause, loop_end::why::overflow);
  EXPECT_EQ(end.limit, resource::pending_requests);
  EXPECT_EQ(f.counter(f.upstream->series.overflow[static_cast<int>(resource::pending_requests)]),
            1);
  EXPECT_TRUE(ex.hosts.empty());
}

TEST(attempt_loop, every_breaker_open_fails_fast) {
  cluster_options o = plain();
  o.breaker = resilience::circuit_breaker_options{};
  fixture f{std::move(o)};
  for (auto& h : f.upstream->hosts) {
    h->breaker->transition_to_open();
  }
  scripted_exchange ex;
  const auto end = f.run(ex, retry(retry_on::refused, 3));
  EXPECT_EQ(end.cause, loop_end::why::circuit_open);
  EXPECT_EQ(end.host, loop_end::npos);
  EXPECT_TRUE(ex.hosts.empty());
}

TEST(attempt_loop, a_closed_pool_is_not_the_hosts_fault) {
  cluster_options o = breaking();
  fixture f{std::move(o), 1};
  asio::co_spawn(f.io, f.upstream->at(0).pool(0).async_close(),
                 [&f](const std::exception_ptr&) { f.io.stop(); });
  f.io.run_for(std::chrono::seconds{5});
  scripted_exchange ex;
  const auto end = f.run(ex, retry(retry_on::refused, 3));
  EXPECT_EQ(end.cause, loop_end::why::pool_busy);
  EXPECT_EQ(end.error, errc::pool_closed);
  EXPECT_EQ(f.upstream->at(0).breaker->state(), resilience::breaker_state::closed);
}

TEST(attempt_loop, per_try_deadlines_come_from_the_injected_clock) {
  fixture f{plain()};
  auto p = retry(retry_on::reset | retry_on::timeout, 2);
  p.per_try_timeout = 3s;
  p.overall_timeout = 10s;
  scripted_exchange ex{{fail(attempt_result::timeout), answer(200)}};
  std::vector<clock::duration> left;
  struct recording {
    scripted_exchange& inner;
    std::vector<clock::duration>& left;
    manual_clock& time;
    asio::awaitable<exchange_end> exchange(fake_attempt& a) {
      left.push_back(a.deadline() - a.start());
      time.advance(3s); // the try runs to its deadline
      co_return co_await inner.exchange(a);
    }
    asio::awaitable<bool> back_off(clock::duration d) { return inner.back_off(d); }
    void on_retry(const host<fake_connector>& h, const exchange_end& r) { inner.on_retry(h, r); }
    void on_replay(const host<fake_connector>& h) { inner.on_replay(h); }
  } rec{ex, left, f.clock};
  ex.time = &f.clock;
  attempts tries{{p, {"GET", false, true}, f.clock.now()}};
  loop_end end;
  asio::co_spawn(
      f.io,
      [&]() -> asio::awaitable<void> {
        end = co_await attempt_loop(*f.upstream, tries, rec,
                                    {0, f.clock, f.random, 1s, f.clock.now()});
        f.io.stop();
      },
      report_exceptions{"a test's attempts"});
  f.io.run_for(std::chrono::seconds{5});
  EXPECT_EQ(end.how, loop_end::kind::answered);
  ASSERT_EQ(left.size(), 2U);
  EXPECT_EQ(left[0], 3s);
  EXPECT_EQ(left[1], 3s); // 3 s of try and its backoff spent: still a whole try left of 10
  EXPECT_EQ(ex.retried.size(), 1U);
}

TEST(attempt_loop, a_cluster_of_one_host_sends_to_it_unless_its_breaker_refuses) {
  // The HTTP client's clusters: out of service or tried already, the one host still gets the
  // request (panic routing); only its breaker can refuse.
  cluster_options o = plain();
  o.breaker = resilience::circuit_breaker_options{};
  fixture f{std::move(o), 1};
  f.upstream->at(0).healthy = false;
  scripted_exchange ex{{answer(503), answer(200)}};
  EXPECT_EQ(f.run(ex, retry(retry_on::gateway_error, 2)).how, loop_end::kind::answered);
  EXPECT_EQ(ex.hosts.size(), 2U);
  f.upstream->at(0).breaker->transition_to_open();
  scripted_exchange refused;
  EXPECT_EQ(f.run(refused, retry(retry_on::gateway_error, 2)).cause, loop_end::why::circuit_open);
  EXPECT_TRUE(refused.hosts.empty());
}

TEST(attempt_loop, each_thread_picks_with_its_own_balancer) {
  fixture f{plain(2)};
  tried_hosts none{2};
  const auto a = f.upstream->choose(0, none, f.random);
  const auto b = f.upstream->choose(1, none, f.random);
  ASSERT_TRUE(a.found && b.found);
  EXPECT_EQ(a.index, b.index); // two rotations, each at its start
  EXPECT_EQ(f.upstream->choose(0, none, f.random).index, 1U - a.index);
}

} // namespace
} // namespace tether::upstream
