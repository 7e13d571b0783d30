#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <asio/awaitable.hpp>

#include "tether/core/clock.hpp"
#include "tether/core/error.hpp"
#include "tether/core/random.hpp"
#include "tether/resilience/outcome.hpp"
#include "tether/resilience/resource_limit.hpp"
#include "tether/upstream/attempts.hpp"
#include "tether/upstream/cluster.hpp"
#include "tether/upstream/tried_hosts.hpp"

namespace tether::upstream {

/// How an exchange (one request and its response on one connection) ended.
struct exchange_end {
  enum class kind : std::uint8_t {
    answered, ///< the response is the request's answer (judged at its head: attempt::at_response)
    retry,    ///< the response was judged for a retry at its head and dropped: wait `delay`
    failed,   ///< no response to keep: `outcome` says what went wrong
    stopped,  ///< the exchange's user ended it (its client went away, a stop): nothing more
  };
  kind how = kind::failed;
  clock::duration delay{};               ///< retry: the wait decided at the head
  resilience::attempt_outcome outcome{}; ///< failed: what went wrong
  std::error_code error;                 ///< failed: the error, for users that return one
  std::string failure;                   ///< failed: why, in words
  bool malformed = false;      ///< failed: a response that broke the protocol (never retried)
  bool same_on_retry = false;  ///< failed: a retry would meet the same fault (a certificate)
  bool response_bytes = false; ///< failed: some of a response arrived
};

/// How a request's attempts ended.
struct loop_end {
  enum class kind : std::uint8_t {
    answered, ///< an exchange kept a response
    gave_up,  ///< no answer: `cause` says why
    stopped,  ///< an exchange ended it, or its wait before a retry was cut short
  };
  enum class why : std::uint8_t {
    none,
    circuit_open, ///< every host's breaker refused
    overflow,     ///< a cluster threshold refused (`limit`)
    pool_busy,    ///< no connection within the acquire timeout, or the pool closed (`error`)
    failed,       ///< the last attempt failed and is not retried (`outcome`, `error`, `failure`)
  };
  kind how = kind::gave_up;
  why cause = why::none;
  resource limit = resource::connections;
  /// Why no further attempt was made: succeeded for an answer below 500.
  resilience::give_up_reason reason = resilience::give_up_reason::succeeded;
  resilience::attempt_outcome outcome{};
  std::error_code error;
  std::string failure;
  bool malformed = false;
  std::size_t host = npos; ///< the last host picked (npos: none)
  /// Passes through the loop: attempts, a breaker's refusal and a replay included.
  std::uint32_t passes = 0;

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
};

/// What the loop runs on: its thread's index in the cluster, the clock attempts are timed with,
/// the random source of balancers and backoff, and the pool's acquire timeout.
struct loop_setup {
  std::size_t thread = 0;
  const clock& time;
  random_source& random;
  clock::duration acquire_timeout;
  clock::time_point started; ///< the request's start: the first attempt's
};

/// Counts what attempts decided: a retry by the outcome retried, or why not (the retry
/// threshold, the budget).
template <typename Connector>
void count_decision(cluster<Connector>& c, const attempts::decision& d,
                    const resilience::attempt_outcome& outcome) {
  if (d.retry) {
    if (auto* counter = c.series.retries[static_cast<std::size_t>(outcome.result)]) {
      counter->Increment();
    }
  } else if (d.over_retry_limit) {
    c.overflowed(resource::retries);
  } else if (d.reason == resilience::give_up_reason::budget_exhausted &&
             c.series.budget_exhausted != nullptr) {
    c.series.budget_exhausted->Increment();
  }
}

/// One attempt at a host, as an exchange sees it: the connection, when it must end, and the
/// judgement of a response's head.
template <typename Connector>
class attempt {
public:
  using host_type = host<Connector>;
  using lease_type = typename host_type::pool_type::lease;

  attempt(cluster<Connector>& c, std::size_t index, lease_type& lease, attempts& tries,
          resilience::circuit_breaker::permission permission, clock::time_point start,
          const loop_setup& setup)
      : cluster_{c}, index_{index}, lease_{lease}, tries_{tries},
        permission_{permission}, start_{start}, deadline_{tries.attempt_deadline(start)},
        setup_{setup}, reused_{lease.reused()} {}
  attempt(const attempt&) = delete;
  attempt& operator=(const attempt&) = delete;

  [[nodiscard]] host_type& target() const noexcept { return cluster_.at(index_); }
  /// The host's index in the cluster.
  [[nodiscard]] std::size_t index() const noexcept { return index_; }
  [[nodiscard]] lease_type& lease() const noexcept { return lease_; }
  /// The connection served an earlier lease: the upstream may have closed it while it sat idle.
  [[nodiscard]] bool reused() const noexcept { return reused_; }
  [[nodiscard]] clock::time_point start() const noexcept { return start_; }
  /// When the response's head must have come: the per-try timeout, or the request's deadline.
  [[nodiscard]] clock::time_point deadline() const noexcept { return deadline_; }

  /// At a final response's head: reports it against the host (breaker, outlier detection) and
  /// asks the retry rules. nullopt: this response is the answer. A decision: retry (the exchange
  /// drops the response and ends with `retry` and its delay) or give up (the exchange keeps the
  /// response all the same: it is the answer).
  std::optional<attempts::decision> at_response(const resilience::attempt_outcome& outcome) {
    const auto now = setup_.time.now();
    report(outcome, now);
    auto d = tries_.at_response(outcome, now, setup_.random);
    if (d) {
      count_decision(cluster_, *d, outcome);
      reason_ = d->retry ? resilience::give_up_reason::succeeded : d->reason;
    } else {
      const bool below_500 =
          outcome.result == resilience::attempt_result::success ||
          (outcome.result == resilience::attempt_result::http_status && outcome.status < 500);
      reason_ = below_500 ? resilience::give_up_reason::succeeded
                          : resilience::give_up_reason::not_retriable;
    }
    return d;
  }

  // For the loop.
  [[nodiscard]] bool reported() const noexcept { return reported_; }
  [[nodiscard]] resilience::give_up_reason reason() const noexcept { return reason_; }

private:
  void report(const resilience::attempt_outcome& outcome, clock::time_point now) {
    reported_ = true;
    cluster_.report(target(), permission_, outcome, now - start_);
  }

  cluster<Connector>& cluster_;
  std::size_t index_;
  lease_type& lease_;
  attempts& tries_;
  resilience::circuit_breaker::permission permission_;
  clock::time_point start_;
  clock::time_point deadline_;
  const loop_setup& setup_;
  bool reused_;
  bool reported_ = false;
  resilience::give_up_reason reason_ = resilience::give_up_reason::succeeded;
};

namespace detail {

// The parts of the loop that do not wait, as plain functions: what a coroutine keeps across its
// waits lives in its frame, and a frame over 1 KiB is not recycled by Asio (one malloc and free
// per request for the loop's frame otherwise).

/// Before an acquire: the cluster's thresholds. A request waiting for a connection holds a unit
/// of max_pending_requests; with the cluster at max_connections it waits as pending (Envoy's
/// rule) until a connection comes back to its pool, a unit comes back from any thread (the
/// connector counts connections against the limit, and the user wakes the pools when one comes
/// back), or its acquire timeout. False (and `end` says why) when the pending limit refuses.
template <typename Connector>
bool within_thresholds(cluster<Connector>& c, host<Connector>& h, const balancer::choice& picked,
                       resilience::resource_guard& pending, loop_end& end) {
  if (!c.limits) {
    return true;
  }
  pending = resilience::resource_guard{c.limits->pending_requests};
  if (pending) {
    return true;
  }
  h.ignore(picked.permission);
  c.overflowed(resource::pending_requests);
  end.cause = loop_end::why::overflow;
  end.limit = resource::pending_requests;
  end.reason = resilience::give_up_reason::not_retriable;
  return false;
}

/// After an acquire that failed: true (and `end` says why) when it ends the attempts (not the
/// host's doing); else `r` holds the connect failure, an attempt's outcome like any other.
template <typename Connector>
bool acquire_ends_it(cluster<Connector>& c, host<Connector>& h, std::size_t thread,
                     const balancer::choice& picked, std::error_code error, loop_end& end,
                     exchange_end& r) {
  const auto stats = h.pool(thread).stats();
  // A host with no connection whose connect outlasted the wait counts as a connect failure
  // (nothing was sent): reported against it, and retried elsewhere.
  const bool connecting_to_nothing =
      error == errc::pool_timeout && stats.total == 0 && stats.connecting > 0;
  if (!connecting_to_nothing &&
      (error == errc::pool_timeout || error == errc::pool_closed || error == errc::overloaded ||
       error == std::errc::operation_canceled)) {
    // Not the host's doing: nothing is held against it, and nothing is retried.
    h.ignore(picked.permission);
    end.reason = resilience::give_up_reason::not_retriable;
    end.error = error;
    // A request that waited its acquire timeout with the cluster at max_connections throughout
    // is refused by that limit, not by a busy pool.
    const bool at_limit =
        error == errc::pool_timeout && c.limits && c.limits->connections.remaining() == 0;
    if (error == errc::overloaded || at_limit) {
      c.overflowed(resource::connections);
      end.cause = loop_end::why::overflow;
      end.limit = resource::connections;
    } else {
      end.cause = loop_end::why::pool_busy;
    }
    return true;
  }
  r.outcome.result = error == std::errc::connection_refused
                         ? resilience::attempt_result::refused
                         : resilience::attempt_result::connect_failure;
  r.error = error;
  r.failure = connecting_to_nothing
                  ? std::string{"upstream connect failed: no connection in the attempt's time"}
                  : "upstream connect failed: " + error.message();
  // Held against the host (it presents a certificate we refuse), but another try, there or at
  // another host of the cluster, meets the same certificate or the same trust store.
  r.same_on_retry = is_certificate_error(error);
  return false;
}

/// After an attempt with no response to keep: reports it (unless its head was reported) and
/// decides. A decision not to retry fills in `end`.
template <typename Connector>
attempts::decision settle(cluster<Connector>& c, host<Connector>& h, const balancer::choice& picked,
                          exchange_end& r, bool reported, clock::time_point start, attempts& tries,
                          const loop_setup& setup, loop_end& end) {
  const auto now = setup.time.now();
  if (!reported) {
    c.report(h, picked.permission, r.outcome, now - start);
  }
  attempts::decision decision;
  if (r.malformed || r.same_on_retry) {
    decision.reason = resilience::give_up_reason::not_retriable; // a retry will not mend it
  } else {
    decision = tries.after(r.outcome, now, setup.random);
    count_decision(c, decision, r.outcome);
  }
  if (!decision.retry) {
    end.cause = loop_end::why::failed;
    end.reason = decision.reason;
    end.outcome = r.outcome;
    end.error = r.error;
    end.failure = std::move(r.failure);
    end.malformed = r.malformed;
  }
  return decision;
}

} // namespace detail

/// The attempts of one request at a cluster, the same for every user (the HTTP client, the
/// proxy): pick a host (the thread's balancer, with panic routing), check the cluster's
/// thresholds, acquire a connection from the host's pool, exchange, report the outcome against
/// the host, decide with `tries` (retry policy, budget, retry threshold, Retry-After), wait and go
/// again. A kept-alive connection the upstream closed before answering is replaced once for a
/// request that may be sent twice, without counting as a retry or against the host.
///
/// What an attempt exchanges is the `Exchange`'s: the client writes a whole request and reads a
/// whole response, the proxy streams both ways. It provides
///   asio::awaitable<exchange_end> exchange(attempt<Connector>&);  // judges a head with
///                                                                 // attempt::at_response
///   asio::awaitable<bool> back_off(clock::duration);              // false: stop now
///   void on_retry(const host<Connector>&, const exchange_end&);   // a log line, say
///   void on_replay(const host<Connector>&);
template <typename Connector, typename Exchange>
asio::awaitable<loop_end> attempt_loop(cluster<Connector>& c, attempts& tries, Exchange& ex,
                                       loop_setup setup) {
  loop_end end;
  tried_hosts tried{c.size()};
  balancer::choice picked;
  bool again = false; // the same host again, with the breaker's permission it holds
  for (;;) {
    ++end.passes;
    const bool first = tried.empty();
    if (!std::exchange(again, false)) {
      picked = c.choose(setup.thread, tried, setup.random);
    }
    if (!picked.found) {
      end.cause = loop_end::why::circuit_open;
      end.reason = resilience::give_up_reason::not_retriable;
      co_return end;
    }
    tried.add(picked.index);
    end.host = picked.index;
    auto& h = c.at(picked.index);
    resilience::resource_guard pending;
    if (!detail::within_thresholds(c, h, picked, pending, end)) {
      co_return end;
    }
    const typename cluster<Connector>::in_flight counted{c, setup.thread, picked.index};
    const auto start = first ? setup.started : setup.time.now();
    auto acquired = co_await h.pool(setup.thread)
                        .async_acquire(std::min<clock::duration>(
                            setup.acquire_timeout,
                            std::max<clock::duration>(tries.attempt_deadline(start) - start,
                                                      clock::duration{})));
    pending.release();
    exchange_end r;
    bool reported = false; // the exchange reported a response's head against the host
    if (acquired.error) {
      if (detail::acquire_ends_it(c, h, setup.thread, picked, acquired.error, end, r)) {
        co_return end;
      }
    } else {
      h.requests.fetch_add(1, std::memory_order_relaxed);
      if (h.series.attempts != nullptr) {
        h.series.attempts->Increment();
      }
      attempt<Connector> a{c,     picked.index, acquired.connection, tries, picked.permission,
                           start, setup};
      r = co_await ex.exchange(a);
      reported = a.reported();
      if (r.how == exchange_end::kind::answered) {
        end.how = loop_end::kind::answered;
        end.reason = a.reason();
        co_return end;
      }
      if (r.how == exchange_end::kind::stopped) {
        if (!reported) {
          h.ignore(picked.permission);
        }
        end.how = loop_end::kind::stopped;
        co_return end;
      }
      if (r.how == exchange_end::kind::retry) {
        // The connection goes back (or away) before the wait.
        acquired.connection.reset();
        if (!co_await ex.back_off(r.delay)) {
          end.how = loop_end::kind::stopped;
          co_return end;
        }
        continue;
      }
      // A kept-alive connection the upstream closed while it sat idle: the request goes again
      // on another connection to the same host when it may (attempts).
      if (!r.malformed && tries.replay_after_stale(a.reused(), r.response_bytes, r.outcome)) {
        acquired.connection.mark_broken();
        if (c.series.stale_resends != nullptr) {
          c.series.stale_resends->Increment();
        }
        ex.on_replay(h);
        again = true;
        continue;
      }
    }
    // The attempt ended with no response to keep: an error the policy may retry.
    const auto decision = detail::settle(c, h, picked, r, reported, start, tries, setup, end);
    if (!decision.retry) {
      co_return end;
    }
    ex.on_retry(h, r);
    if (!co_await ex.back_off(decision.delay)) {
      end.how = loop_end::kind::stopped;
      co_return end;
    }
  }
}

} // namespace tether::upstream
