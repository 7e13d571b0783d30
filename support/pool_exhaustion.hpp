#pragma once

// The seed's scenario A: a service's PostgreSQL pool held by a few slow queries while many fast
// requests wait. Drives a real server with an open-loop load (fixed arrival rates, bounded
// duration) through tether's pg pool and reports what the fast requests saw.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "tether/pg/pool.hpp"

namespace tether::bench {

using namespace std::chrono_literals;

/// One configuration of the pool and the load.
struct exhaustion_config {
  std::string name;
  std::size_t pool_size = 10;
  clock::duration acquire_timeout = 30s;
  clock::duration query_timeout = 0s; ///< 0: none
  clock::duration fast_every = 5ms;   ///< a fast request (SELECT 1) this often
  clock::duration slow_every = 400ms; ///< a slow request (pg_sleep) this often
  double slow_seconds = 5.0;          ///< how long a slow query sleeps
  clock::duration load_for = 15s;     ///< how long requests keep arriving
  clock::duration drain_limit = 60s;  ///< how long to wait for the last answers after that
};

/// What the fast and slow requests saw.
struct exhaustion_report {
  std::string name;
  std::size_t fast_sent = 0, fast_ok = 0, fast_timeouts = 0, fast_other_errors = 0;
  std::size_t slow_sent = 0, slow_ok = 0, slow_failed_fast = 0, slow_other_errors = 0;
  double fast_p50_ms = 0, fast_p99_ms = 0, fast_max_ms = 0;
  double seconds = 0;     ///< from the first arrival to the last answer
  std::string slow_error; ///< what a failed slow request was told
  std::string fast_error; ///< what a timed-out fast request was told

  [[nodiscard]] double fast_per_second() const {
    return seconds > 0 ? static_cast<double>(fast_ok) / seconds : 0;
  }
};

namespace detail {

struct exhaustion_run {
  exhaustion_config config;
  std::shared_ptr<pg::pool> pool;
  exhaustion_report report;
  std::vector<double> fast_ms;
  std::size_t outstanding = 0;
};

inline asio::awaitable<void> one_request(std::shared_ptr<exhaustion_run> run, bool slow) {
  const auto started = std::chrono::steady_clock::now();
  auto& r = run->report;
  auto lease = co_await run->pool->async_acquire(run->config.acquire_timeout);
  pg::query_outcome result;
  if (lease.error) {
    result.error = lease.error;
    result.message = lease.error.message();
  } else {
    const std::string sql =
        slow ? "SELECT pg_sleep(" + std::to_string(run->config.slow_seconds) + ")" : "SELECT 1";
    result = co_await lease.connection->query(sql, {}, run->config.query_timeout);
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  if (slow) {
    if (!result.error) {
      ++r.slow_ok;
    } else if (result.error == pg::errc::query_timeout) {
      ++r.slow_failed_fast;
      r.slow_error = result.message;
    } else {
      ++r.slow_other_errors;
      r.slow_error = result.message;
    }
  } else {
    if (!result.error) {
      ++r.fast_ok;
      run->fast_ms.push_back(ms);
    } else if (result.error == tether::errc::pool_timeout) {
      ++r.fast_timeouts;
      r.fast_error = result.error.message();
    } else {
      ++r.fast_other_errors;
      r.fast_error = result.message;
    }
  }
  --run->outstanding;
}

inline asio::awaitable<void> arrivals(std::shared_ptr<exhaustion_run> run, bool slow) {
  const auto every = slow ? run->config.slow_every : run->config.fast_every;
  const auto end = std::chrono::steady_clock::now() + run->config.load_for;
  asio::steady_timer tick{co_await asio::this_coro::executor};
  auto next = std::chrono::steady_clock::now();
  while (next < end) {
    ++run->outstanding;
    ++(slow ? run->report.slow_sent : run->report.fast_sent);
    asio::co_spawn(tick.get_executor(), one_request(run, slow), asio::detached);
    next += every; // open loop: arrivals do not wait for answers
    tick.expires_at(next);
    co_await tick.async_wait(asio::use_awaitable);
  }
}

inline double percentile(std::vector<double>& v, double p) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  return v[i];
}

} // namespace detail

/// Runs one configuration against the server at `conninfo`.
inline exhaustion_report run_exhaustion(const std::string& conninfo, const exhaustion_config& c) {
  asio::io_context io{1};
  auto run = std::make_shared<detail::exhaustion_run>();
  run->config = c;
  run->report.name = c.name;
  pool::pool_options options;
  options.max_size = c.pool_size;
  options.acquire_timeout = c.acquire_timeout;
  run->pool = pg::pool::create(io.get_executor(), pg::connector{{conninfo}}, options,
                               monotonic_clock::instance());
  run->pool->start();
  io.run_for(std::chrono::milliseconds{500}); // let min_idle fill: both runs start warm
  io.restart();

  const auto started = std::chrono::steady_clock::now();
  asio::co_spawn(io, detail::arrivals(run, false), asio::detached);
  asio::co_spawn(io, detail::arrivals(run, true), asio::detached);
  const auto give_up = started + c.load_for + c.drain_limit;
  while ((std::chrono::steady_clock::now() < started + c.load_for || run->outstanding > 0) &&
         std::chrono::steady_clock::now() < give_up) {
    io.run_for(std::chrono::milliseconds{20});
  }
  run->report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  run->report.fast_p50_ms = detail::percentile(run->fast_ms, 0.50);
  run->report.fast_p99_ms = detail::percentile(run->fast_ms, 0.99);
  run->report.fast_max_ms = run->fast_ms.empty() ? 0 : run->fast_ms.back();
  return run->report;
}

/// Prints one report as a block of lines.
inline void print(const exhaustion_report& r) {
  std::printf("%s\n", r.name.c_str());
  std::printf("  fast requests: %zu sent, %zu answered, %zu pool timeouts, %zu other errors\n",
              r.fast_sent, r.fast_ok, r.fast_timeouts, r.fast_other_errors);
  std::printf(
      "  fast latency:  p50 %.1f ms, p99 %.1f ms, max %.1f ms; %.1f answered/s over %.1f s\n",
      r.fast_p50_ms, r.fast_p99_ms, r.fast_max_ms, r.fast_per_second(), r.seconds);
  std::printf("  slow requests: %zu sent, %zu finished, %zu failed fast, %zu other errors\n",
              r.slow_sent, r.slow_ok, r.slow_failed_fast, r.slow_other_errors);
  if (!r.slow_error.empty()) {
    std::printf("  a slow request was told: %s", r.slow_error.c_str());
    if (r.slow_error.back() != '\n') {
      std::printf("\n");
    }
  }
  if (!r.fast_error.empty()) {
    std::printf("  a fast request was told: %s\n", r.fast_error.c_str());
  }
}

} // namespace tether::bench
