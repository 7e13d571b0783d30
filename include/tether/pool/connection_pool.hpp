#pragma once

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <source_location>
#include <tuple>
#include <utility>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/dispatch.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include "tether/core/clock.hpp"
#include "tether/core/detached.hpp"
#include "tether/core/error.hpp"
#include "tether/core/executor.hpp"
#include "tether/core/random.hpp"
#include "tether/pool/pool_options.hpp"
#include "tether/resilience/backoff.hpp"

namespace tether::pool {

/// What the pool needs of a connection type: open one, check one cheaply before hand-out,
/// validate one (a ping, for keepalive and validation on borrow), and close one.
template <class C>
concept connector = requires(C& c, typename C::connection_type& conn,
                             std::unique_ptr<typename C::connection_type>& out) {
  { c.async_connect(out) } -> std::same_as<asio::awaitable<std::error_code>>;
  { c.async_validate(conn) } -> std::same_as<asio::awaitable<bool>>;
  { c.is_usable(conn) } -> std::same_as<bool>;
  { c.close(conn) } -> std::same_as<void>;
};

/// A connector may also say whether a connection that comes back may be pooled again (a
/// database session left inside a transaction may not); without it, every returned connection
/// that is not marked broken is.
template <class C>
concept checks_reuse = requires(C& c, typename C::connection_type& conn) {
  { c.is_reusable(conn) } -> std::same_as<bool>;
};

/// A connector may also put a returned connection back in a clean state before it is pooled
/// again: roll back a transaction left open, reset a database session. When `needs_reset` says
/// so, the pool runs `async_reset` before anyone else gets the connection, and closes it as
/// `reset_failed` if the reset returns false.
template <class C>
concept resets_on_return = requires(C& c, typename C::connection_type& conn) {
  { c.needs_reset(conn) } -> std::same_as<bool>;
  { c.async_reset(conn) } -> std::same_as<asio::awaitable<bool>>;
};

template <connector Connector, class Executor, class Timer>
class connection_pool;

namespace detail {

/// One connection and what the pool knows of it. The pool keeps one list per state, as Envoy's
/// conn_pool_base: `idle_` (a stack, so the most recently used goes out first and the rest can
/// time out) and the leased, probing or resetting ones counted in `active_`.
template <class Connection>
struct pooled {
  enum class state : std::uint8_t { idle, leased, probing, resetting };

  std::unique_ptr<Connection> connection;
  clock::time_point created{};
  clock::time_point expires{};    // created + lifetime (jittered); max() when unlimited
  clock::time_point last_used{};  // when it last went idle
  clock::time_point last_probe{}; // when a keepalive probe last passed
  clock::time_point leased_at{};
  std::source_location leased_from{};
  state current = state::idle;
  bool broken = false;   // its lease marked it broken
  bool detached = false; // its lease took what it holds out of the pool
  bool evict = false;    // close it when it comes back
  bool leak_reported = false;
  bool returned = false; // it came back from a lease and was kept: the next lease reuses it
};

} // namespace detail

/// Holds one pooled connection. Dropping it gives the connection back to the pool (from any
/// thread); a connection marked broken is closed instead and never handed out again. A lease
/// keeps its pool alive.
template <connector Connector, class Executor, class Timer>
class basic_lease {
public:
  using pool_type = connection_pool<Connector, Executor, Timer>;
  using connection_type = typename Connector::connection_type;

  basic_lease() noexcept = default;
  basic_lease(basic_lease&& other) noexcept
      : pool_{std::move(other.pool_)}, entry_{std::exchange(other.entry_, nullptr)} {}
  basic_lease& operator=(basic_lease&& other) noexcept {
    if (this != &other) {
      reset();
      pool_ = std::move(other.pool_);
      entry_ = std::exchange(other.entry_, nullptr);
    }
    return *this;
  }
  basic_lease(const basic_lease&) = delete;
  basic_lease& operator=(const basic_lease&) = delete;
  ~basic_lease() { reset(); }

  explicit operator bool() const noexcept { return entry_ != nullptr; }
  connection_type& operator*() const noexcept { return *entry_->connection; }
  connection_type* operator->() const noexcept { return entry_->connection.get(); }

  /// The connection is in an unknown state (an error mid-exchange): close it on return.
  void mark_broken() noexcept {
    if (entry_ != nullptr) {
      entry_->broken = true;
    }
  }

  /// The caller has moved what the connection holds (its socket) out for good, as a proxy
  /// does for a tunnel: on return it is closed (`detached`, not `broken`: nothing went wrong)
  /// and never handed out again.
  void detach() noexcept {
    if (entry_ != nullptr) {
      entry_->detached = true;
    }
  }

  /// The connection served an earlier lease and came back: its peer may have closed it while it
  /// sat idle (a request on it may find it gone before any answer).
  [[nodiscard]] bool reused() const noexcept { return entry_ != nullptr && entry_->returned; }

  /// Gives the connection back now.
  void reset() noexcept;

private:
  friend pool_type;
  basic_lease(std::shared_ptr<pool_type> pool, detail::pooled<connection_type>* entry) noexcept
      : pool_{std::move(pool)}, entry_{entry} {}

  std::shared_ptr<pool_type> pool_;
  detail::pooled<connection_type>* entry_ = nullptr;
};

/// A pool of connections made by `Connector`, served on one executor: an io_context's executor
/// for a thread-per-core worker, or a strand when several threads share the pool. Everything the
/// pool does runs there, so its state needs no lock; leases dropped on other threads post back.
///
/// HikariCP's semantics: fixed or dynamic size (max_size, min_idle), acquire timeout, idle
/// timeout above min_idle, max lifetime with up to 2.5 % jitter, keepalive probes, validation on
/// borrow, leak detection; waiters are served first come, first served. Reconnects to a failing
/// host back off with gRPC's connection backoff. See docs/pool.md for the states.
template <connector Connector, class Executor = asio::io_context::executor_type,
          class Timer = asio::basic_waitable_timer<
              std::chrono::steady_clock, asio::wait_traits<std::chrono::steady_clock>, Executor>>
class connection_pool
    : public std::enable_shared_from_this<connection_pool<Connector, Executor, Timer>> {
  struct private_tag {};

public:
  using connection_type = typename Connector::connection_type;
  using lease = basic_lease<Connector, Executor, Timer>;
  using entry = detail::pooled<connection_type>;

  /// What an acquire gives: a lease, or why there is none (pool_timeout, pool_closed, the
  /// connect error when the host cannot be reached, std::errc::operation_canceled when cancelled).
  struct acquire_result {
    std::error_code error;
    lease connection;
  };

  /// Makes a pool. Call start() to prefill it and begin housekeeping.
  ///
  /// The clock defaults to the coarse monotonic clock: the pool reads it on every acquire and
  /// release, and its rules are measured in seconds, so a 1-4 ms resolution costs nothing while
  /// a precise read would double the cost of an acquire. Pass monotonic_clock::instance() for
  /// acquire-wait and usage figures finer than that (bench/pool_bench.cpp measures both).
  static std::shared_ptr<connection_pool>
  create(Executor executor, Connector connector, const pool_options& options,
         const clock& clock = coarse_monotonic_clock::instance(),
         std::shared_ptr<pool_observer> observer = {},
         std::uint64_t seed = default_random::entropy_seed()) {
    options.validate();
    return std::make_shared<connection_pool>(private_tag{}, std::move(executor),
                                             std::move(connector), options, clock,
                                             std::move(observer), seed);
  }

  /// The same from an any_io_executor, such as `co_await asio::this_coro::executor` in a
  /// coroutine spawned on an io_context. Throws std::invalid_argument when it is not an
  /// io_context's executor (use a pool typed on a strand for those).
  static std::shared_ptr<connection_pool>
  create(const asio::any_io_executor& executor, Connector connector, const pool_options& options,
         const clock& clock = coarse_monotonic_clock::instance(),
         std::shared_ptr<pool_observer> observer = {},
         std::uint64_t seed = default_random::entropy_seed()) requires
      std::same_as<Executor, asio::io_context::executor_type> {
    return create(io_executor_of(executor, "pool::connection_pool::create"), std::move(connector),
                  options, clock, std::move(observer), seed);
  }

  connection_pool(private_tag, Executor executor, Connector connector, const pool_options& options,
                  const clock& clock, std::shared_ptr<pool_observer> observer, std::uint64_t seed)
      : executor_{std::move(executor)}, connector_{std::move(connector)}, options_{options},
        min_idle_{options.effective_min_idle()}, clock_{clock},
        observer_{observer ? std::move(observer) : std::make_shared<pool_observer>()},
        random_{seed}, backoff_{options.connect_backoff}, housekeeping_timer_{executor_},
        drain_timer_{executor_} {}

  connection_pool(const connection_pool&) = delete;
  connection_pool& operator=(const connection_pool&) = delete;

  /// Prefills min_idle connections and starts the housekeeper. Call once.
  void start() {
    asio::dispatch(executor_, [self = this->shared_from_this()] {
      asio::co_spawn(self->executor_, self->housekeeper(),
                     report_exceptions{"a pool's housekeeping"});
    });
  }

  /// Acquires a connection, waiting up to `timeout` (the pool's acquire_timeout by default).
  /// Cancellable: a cancelled acquire leaves the queue and ends with std::errc::operation_canceled.
  asio::awaitable<acquire_result>
  async_acquire(std::optional<clock::duration> timeout = std::nullopt,
                std::source_location where = std::source_location::current()) {
    if (!executor_.running_in_this_thread()) {
      // Hop to the pool's executor for the acquire; the caller resumes on its own.
      co_return co_await asio::co_spawn(
          executor_, acquire_on(this->shared_from_this(), timeout, where), asio::use_awaitable);
    }
    // Fast path, with no second coroutine frame: an idle connection that needs no validation.
    if (state_ == pool_state::open) {
      if (entry* e = take_idle(clock_.now())) {
        co_return hand_out_active(e, where, e->leased_at, e->leased_at);
      }
    }
    co_return co_await acquire_here(timeout, where);
  }

  /// Acquires from a thread that is not the pool's (a caller without coroutines). Blocks the
  /// calling thread, never the pool's: called on the pool's own thread it returns
  /// errc::blocking_on_worker at once instead of waiting for itself.
  acquire_result acquire(std::optional<clock::duration> timeout = std::nullopt,
                         std::source_location where = std::source_location::current()) {
    if (executor_.running_in_this_thread()) {
      return {make_error_code(errc::blocking_on_worker), {}};
    }
    std::promise<acquire_result> promise;
    auto done = promise.get_future();
    asio::co_spawn(executor_, acquire_on(this->shared_from_this(), timeout, where),
                   [&promise](std::exception_ptr e, acquire_result r) {
                     if (e) {
                       promise.set_exception(e);
                     } else {
                       promise.set_value(std::move(r));
                     }
                   });
    return done.get();
  }

  /// Stops handing out connections (waiters get pool_closed), closes idle ones, lets leases come
  /// home for up to drain_timeout, then closes the rest. Run it on any executor.
  asio::awaitable<void> async_close() {
    co_await asio::co_spawn(executor_, close_on(this->shared_from_this()), asio::use_awaitable);
  }

  /// Closes every idle connection now, every leased one when it comes back, and one being probed
  /// or validated when that ends (it is not lent or kept); the pool stays open and makes new
  /// connections on demand (its peer was taken out of service and may come back). Call on the
  /// pool's executor.
  void evict_all() {
    while (!idle_.empty()) {
      entry* e = idle_.back();
      idle_.pop_back();
      close_idle_taken(e, close_reason::evicted);
    }
    for (const auto& e : all_) {
      e->evict = true;
    }
  }

  /// Its peer left the configuration (a proxy reload removed it): work in flight may still
  /// borrow from the pool, but nothing is kept for later. Closes every idle connection now
  /// (`retired`), each leased or newly made one when it comes back with no waiter for it, and
  /// keeps no min_idle from now on. Call on the pool's executor; async_close still ends it.
  void retire() {
    retired_ = true;
    min_idle_.store(0, std::memory_order_relaxed);
    while (!idle_.empty()) {
      entry* e = idle_.back();
      idle_.pop_back();
      close_idle_taken(e, close_reason::retired);
    }
  }

  /// From any thread: a limit the connector counts against (tether::errc::overloaded) has room
  /// again, so waiters try to connect now rather than at their timeout.
  void wake_waiters() {
    asio::post(executor_, [weak = this->weak_from_this()] {
      if (auto self = weak.lock(); self && !self->waiters_.empty()) {
        self->maybe_connect();
      }
    });
  }

  /// From any thread: closes the least recently used idle connection, if there is one, giving
  /// back what it holds of a limit shared with other pools (a proxy cluster's max_connections)
  /// to a request waiting at it elsewhere.
  void shed_idle() {
    asio::post(executor_, [weak = this->weak_from_this()] {
      if (auto self = weak.lock(); self && !self->idle_.empty()) {
        entry* e = self->idle_.front();
        self->idle_.erase(self->idle_.begin());
        self->close_idle_taken(e, close_reason::shed);
      }
    });
  }

  /// Called on the pool's executor when a connect for its waiters was refused by the
  /// connector's own limit (tether::errc::overloaded): the waiters stay in line for their
  /// timeout, and this may ask other pools sharing the limit to give a unit back (shed_idle).
  void on_overloaded(std::function<void()> f) { on_overloaded_ = std::move(f); }

  /// Asked on the pool's executor when a connection comes back with no waiter here for it:
  /// true closes it (close_reason::shed) instead of keeping it idle, giving its unit of a
  /// shared limit to a request waiting in another pool.
  void shed_on_return(std::function<bool()> f) { shed_on_return_ = std::move(f); }

  /// The pool's counts, readable from any thread.
  [[nodiscard]] pool_stats stats() const noexcept {
    pool_stats s;
    s.idle = idle_count_.load(std::memory_order_relaxed);
    s.active = active_count_.load(std::memory_order_relaxed);
    s.total = s.idle + s.active;
    s.pending = pending_count_.load(std::memory_order_relaxed);
    s.connecting = connecting_count_.load(std::memory_order_relaxed);
    s.max = options_.max_size;
    s.min_idle = min_idle_.load(std::memory_order_relaxed);
    return s;
  }

  [[nodiscard]] const pool_options& options() const noexcept { return options_; }
  [[nodiscard]] const Executor& get_executor() const noexcept { return executor_; }
  [[nodiscard]] Connector& get_connector() noexcept { return connector_; }

private:
  friend lease;
  enum class pool_state : std::uint8_t { open, closing, closed };

  // A suspended acquirer. Lives in its coroutine's frame; the pool holds a pointer while it
  // waits. The hand-off sets the result and cancels the timer, which wakes the coroutine.
  struct waiter {
    explicit waiter(const Executor& ex) : timer{ex} {}
    Timer timer;
    entry* handed = nullptr;
    std::error_code error;
    bool done = false;
    std::source_location where{};
    clock::time_point since{};
  };

  // Coroutines that own a reference to the pool while they run on its executor. (Free functions
  // with the pool as a by-value parameter rather than capturing lambdas: g++ 12 mishandles the
  // lifetime of a lambda coroutine's captures when co_spawn moves the lambda.)
  static asio::awaitable<acquire_result> acquire_on(std::shared_ptr<connection_pool> self,
                                                    std::optional<clock::duration> timeout,
                                                    std::source_location where) {
    co_return co_await self->acquire_here(timeout, where);
  }

  static asio::awaitable<void> close_on(std::shared_ptr<connection_pool> self) {
    co_await self->close_here();
  }

  // --- acquiring ---------------------------------------------------------------------------

  asio::awaitable<acquire_result> acquire_here(std::optional<clock::duration> timeout,
                                               std::source_location where) {
    if (state_ != pool_state::open) {
      co_return acquire_result{make_error_code(errc::pool_closed), {}};
    }
    const auto started = clock_.now();
    if (entry* e = take_idle(started)) {
      co_return hand_out_active(e, where, started, started);
    }
    // Idle connections that are due a validation before they go out.
    while (!idle_.empty()) {
      entry* e = idle_.back();
      idle_.pop_back();
      if (!ready_for_borrow(*e, started)) {
        continue;
      }
      if (options_.validate_on_borrow && started - e->last_used >= alive_bypass_window) {
        e->current = entry::state::probing;
        move_idle_to_active();
        const bool valid = co_await connector_.async_validate(*e->connection);
        if (!valid || state_ != pool_state::open || e->evict) {
          // Evicted while it was being validated: its host went out of service.
          close_active(e, !valid ? close_reason::validation_failed
                                 : (e->evict ? close_reason::evicted : close_reason::pool_closed));
          drained_check();
          if (state_ != pool_state::open) {
            co_return acquire_result{make_error_code(errc::pool_closed), {}};
          }
          continue;
        }
        co_return hand_out_active(e, where, started, clock_.now());
      }
      move_idle_to_active();
      co_return hand_out_active(e, where, started, clock_.now());
    }

    // The host is failing and nothing could come back before the backoff ends: say why now
    // rather than after the acquire timeout.
    if (all_.empty() && connecting_ == 0 && last_connect_error_ && clock_.now() < backoff_until_) {
      observer_->on_acquire_failed_fast(last_connect_error_);
      co_return acquire_result{last_connect_error_, {}};
    }
    // Slow path: wait in line, asking for a new connection if there is room.
    waiter w{executor_};
    w.where = where;
    w.since = started;
    const auto limit = timeout.value_or(options_.acquire_timeout);
    w.timer.expires_after(std::chrono::duration_cast<typename Timer::duration>(limit));
    waiters_.push_back(&w);
    pending_count_.store(waiters_.size(), std::memory_order_relaxed);
    maybe_connect();
    // A connect that completes at once (dispatched inline) may have served us already: cancelling
    // a timer nobody waits on wakes nobody, so look before waiting.
    std::error_code ec;
    if (!w.done) {
      std::tie(ec) = co_await w.timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
    if (!w.done) {
      remove_waiter(&w);
      if (!ec) {
        observer_->on_acquire_timeout();
        co_return acquire_result{make_error_code(errc::pool_timeout), {}};
      }
      // Cancelled. Asio's operation_aborted lives in its own category; hand out the standard
      // code, which compares equal to std::errc::operation_canceled.
      co_return acquire_result{make_error_code(std::errc::operation_canceled), {}};
    }
    if (w.error) {
      co_return acquire_result{w.error, {}};
    }
    co_return acquire_result{{}, lease{this->shared_from_this(), w.handed}};
  }

  // Takes the most recently used idle connection that passes the cheap check and needs no
  // validation, counted active with leased_at = now; nullptr if there is none. Closes the
  // connections it finds dead or expired on the way.
  entry* take_idle(clock::time_point now) {
    while (!idle_.empty()) {
      entry* e = idle_.back();
      if (options_.validate_on_borrow && now - e->last_used >= alive_bypass_window) {
        return nullptr; // the coroutine path validates it
      }
      idle_.pop_back();
      if (!ready_for_borrow(*e, now)) {
        continue;
      }
      move_idle_to_active();
      e->leased_at = now;
      return e;
    }
    return nullptr;
  }

  // Checks an entry taken from idle before it goes out; closes it if it may not.
  bool ready_for_borrow(entry& e, clock::time_point now) {
    if (now >= e.expires) {
      close_idle_taken(&e, close_reason::max_lifetime);
      return false;
    }
    if (!connector_.is_usable(*e.connection)) {
      close_idle_taken(&e, close_reason::not_usable);
      return false;
    }
    return true;
  }

  acquire_result hand_out_active(entry* e, const std::source_location& where,
                                 clock::time_point started, clock::time_point now) {
    e->current = entry::state::leased;
    e->leased_at = now;
    e->leased_from = where;
    e->leak_reported = false;
    observer_->on_acquired(now - started);
    return {{}, lease{this->shared_from_this(), e}};
  }

  void remove_waiter(waiter* w) {
    const auto it = std::find(waiters_.begin(), waiters_.end(), w);
    if (it != waiters_.end()) {
      waiters_.erase(it);
    }
    pending_count_.store(waiters_.size(), std::memory_order_relaxed);
  }

  // Gives `e` (already counted active) to the first waiter. False if nobody waits.
  bool hand_to_waiter(entry* e) {
    if (waiters_.empty()) {
      return false;
    }
    waiter* w = waiters_.front();
    waiters_.pop_front();
    pending_count_.store(waiters_.size(), std::memory_order_relaxed);
    const auto now = clock_.now();
    e->current = entry::state::leased;
    e->leased_at = now;
    e->leased_from = w->where;
    e->leak_reported = false;
    w->handed = e;
    w->done = true;
    observer_->on_acquired(now - w->since);
    w->timer.cancel();
    return true;
  }

  // A connection that is free: to the first waiter, or onto the idle stack.
  void offer(entry* e) {
    if (hand_to_waiter(e)) {
      return;
    }
    if (retired_) {
      close_active(e, close_reason::retired);
      return;
    }
    if (shed_on_return_ && shed_on_return_()) {
      // Another pool's request waits for a unit of the limit this connection holds.
      close_active(e, close_reason::shed);
      return;
    }
    e->current = entry::state::idle;
    e->last_used = clock_.now();
    idle_.push_back(e);
    active_count_.fetch_sub(1, std::memory_order_relaxed);
    idle_count_.store(idle_.size(), std::memory_order_relaxed);
  }

  // --- connecting --------------------------------------------------------------------------

  [[nodiscard]] std::size_t total() const noexcept { return all_.size() + connecting_; }

  // Opens connections for waiters that no connection in flight will serve, within max_size
  // and outside the backoff after a failure.
  void maybe_connect() {
    if (state_ != pool_state::open || clock_.now() < backoff_until_) {
      return;
    }
    // The backoff is checked each round: a connect that fails without suspending starts it.
    // So is a refusal by the connector's limit, which ends the round (wake_waiters starts the
    // next one when a unit comes back).
    refused_by_limit_ = false;
    while (connecting_ < waiters_.size() && total() < options_.max_size &&
           clock_.now() >= backoff_until_ && !refused_by_limit_) {
      start_connect();
    }
  }

  void start_connect() {
    ++connecting_;
    connecting_count_.store(connecting_, std::memory_order_relaxed);
    asio::co_spawn(executor_, connect_one(this->shared_from_this()),
                   report_exceptions{"a pool's connect"});
  }

  static asio::awaitable<void> connect_one(std::shared_ptr<connection_pool> self) {
    const auto started = self->clock_.now();
    std::unique_ptr<connection_type> connection;
    const std::error_code ec = co_await self->connector_.async_connect(connection);
    self->finish_connect(ec, std::move(connection), started);
  }

  void finish_connect(std::error_code ec, std::unique_ptr<connection_type> connection,
                      clock::time_point started) {
    --connecting_;
    connecting_count_.store(connecting_, std::memory_order_relaxed);
    const auto now = clock_.now();
    if (state_ != pool_state::open) {
      if (connection) {
        connector_.close(*connection);
      }
      return;
    }
    if (ec || !connection) {
      if (!ec) {
        ec = make_error_code(std::errc::not_connected);
      }
      observer_->on_connect_failed(ec);
      // A connector refusing for a limit of its own (tether::errc::overloaded: a proxy
      // cluster's max_connections) says nothing of the peer: no backoff for it.
      if (ec != errc::overloaded) {
        last_connect_error_ = ec;
        // One step of backoff per round: connects that were in flight together and fail
        // together do not compound it. gRPC counts the wait from the start of the failed attempt.
        if (now >= backoff_until_) {
          backoff_until_ = std::max(now, started + backoff_.next(random_));
        }
        housekeeping_timer_.cancel(); // wake up at the end of the backoff, not a period later
      }
      if (ec == errc::overloaded) {
        refused_by_limit_ = true;
        // A limit shared with other pools: a unit may come back from any of them (wake_waiters),
        // so the waiters stay in line until their timeout.
        if (!waiters_.empty() && on_overloaded_) {
          on_overloaded_();
        }
        return;
      }
      // With nothing that could come back, waiting is pointless: tell waiters why now.
      if (all_.empty() && connecting_ == 0) {
        fail_waiters(ec);
      }
      return;
    }
    backoff_.reset();
    backoff_until_ = {};
    last_connect_error_ = {};
    auto e = std::make_unique<entry>();
    e->connection = std::move(connection);
    e->created = now;
    e->expires = lifetime_end(now);
    e->last_used = now;
    e->last_probe = now;
    e->current = entry::state::leased;
    entry* raw = e.get();
    all_.push_back(std::move(e));
    active_count_.fetch_add(1, std::memory_order_relaxed);
    observer_->on_connected(now - started);
    offer(raw);
  }

  clock::time_point lifetime_end(clock::time_point now) {
    if (options_.max_lifetime <= clock::duration::zero()) {
      return clock::time_point::max();
    }
    // HikariCP: up to 2.5 % shorter, so connections made together do not expire together.
    const auto jitter =
        uniform_duration(random_, clock::duration::zero(), options_.max_lifetime / 40);
    return now + options_.max_lifetime - jitter;
  }

  void fail_waiters(std::error_code ec) {
    while (!waiters_.empty()) {
      waiter* w = waiters_.front();
      waiters_.pop_front();
      w->error = ec;
      w->done = true;
      w->timer.cancel();
    }
    pending_count_.store(0, std::memory_order_relaxed);
  }

  // --- returning and closing ---------------------------------------------------------------

  void give_back(entry* e) {
    const auto now = clock_.now();
    const auto held = now - e->leased_at;
    observer_->on_released(held);
    if (e->leak_reported) {
      observer_->on_leak_returned(e->leased_from, held);
    }
    bool reusable = true;
    if constexpr (checks_reuse<Connector>) {
      reusable = e->detached || e->broken || state_ != pool_state::open || e->evict ||
                 connector_.is_reusable(*e->connection);
    }
    if (e->detached) {
      close_active(e, close_reason::detached);
    } else if (e->broken) {
      close_active(e, close_reason::broken);
    } else if (state_ != pool_state::open) {
      close_active(e, close_reason::pool_closed);
    } else if (e->evict) {
      close_active(e, close_reason::evicted);
    } else if (!reusable) {
      close_active(e, close_reason::not_reusable);
    } else if (now >= e->expires) {
      close_active(e, close_reason::max_lifetime);
    } else {
      if constexpr (resets_on_return<Connector>) {
        if (connector_.needs_reset(*e->connection)) {
          e->current = entry::state::resetting; // still counted active
          asio::co_spawn(executor_, reset(this->shared_from_this(), e),
                         report_exceptions{"a pool's reset of a returned connection"});
          return;
        }
      }
      e->returned = true;
      offer(e);
      return;
    }
    maybe_connect();
    drained_check();
  }

  static asio::awaitable<void> reset(std::shared_ptr<connection_pool> self, entry* e) {
    const bool clean = co_await self->connector_.async_reset(*e->connection);
    if (!clean || self->state_ != pool_state::open || e->evict) {
      self->close_active(e, !clean
                                ? close_reason::reset_failed
                                : (e->evict ? close_reason::evicted : close_reason::pool_closed));
      self->maybe_connect();
      self->drained_check();
      co_return;
    }
    e->returned = true;
    self->offer(e);
  }

  // While closing, the last active connection gone ends the drain early.
  void drained_check() {
    if (state_ == pool_state::closing && active_count_.load(std::memory_order_relaxed) == 0) {
      drain_timer_.cancel();
    }
  }

  void move_idle_to_active() {
    active_count_.fetch_add(1, std::memory_order_relaxed);
    idle_count_.store(idle_.size(), std::memory_order_relaxed);
  }

  // Closes an entry already taken off the idle stack (not yet counted active).
  void close_idle_taken(entry* e, close_reason reason) {
    idle_count_.store(idle_.size(), std::memory_order_relaxed);
    destroy(e, reason);
  }

  void close_active(entry* e, close_reason reason) {
    active_count_.fetch_sub(1, std::memory_order_relaxed);
    destroy(e, reason);
  }

  void destroy(entry* e, close_reason reason) {
    connector_.close(*e->connection);
    observer_->on_closed(reason);
    const auto it =
        std::find_if(all_.begin(), all_.end(), [e](const auto& p) { return p.get() == e; });
    if (it != all_.end()) {
      std::swap(*it, all_.back());
      all_.pop_back();
    }
  }

  asio::awaitable<void> close_here() {
    if (state_ != pool_state::open) {
      co_return;
    }
    state_ = pool_state::closing;
    housekeeping_timer_.cancel();
    fail_waiters(make_error_code(errc::pool_closed));
    while (!idle_.empty()) {
      entry* e = idle_.back();
      idle_.pop_back();
      close_idle_taken(e, close_reason::pool_closed);
    }
    if (active_count_.load(std::memory_order_relaxed) > 0) {
      drain_timer_.expires_after(
          std::chrono::duration_cast<typename Timer::duration>(options_.drain_timeout));
      co_await drain_timer_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
    // Whatever is still out is closed under its lease, which frees it when dropped.
    for (const auto& e : all_) {
      e->evict = true;
      connector_.close(*e->connection);
    }
    state_ = pool_state::closed;
  }

  // --- housekeeping ------------------------------------------------------------------------

  asio::awaitable<void> housekeeper() {
    auto self = this->shared_from_this(); // keeps the pool alive while it runs
    while (state_ == pool_state::open) {
      housekeep(clock_.now());
      auto wait = options_.housekeeping_period;
      const auto now = clock_.now();
      if (backoff_until_ > now && backoff_until_ - now < wait) {
        wait = backoff_until_ - now;
      }
      housekeeping_timer_.expires_after(std::chrono::duration_cast<typename Timer::duration>(wait));
      co_await housekeeping_timer_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
  }

  void housekeep(clock::time_point now) {
    // Idle connections: past their lifetime, idle too long above min_idle, or due a probe.
    const bool can_retire_idle =
        options_.idle_timeout > clock::duration::zero() && min_idle_ < options_.max_size;
    for (std::size_t i = 0; i < idle_.size();) {
      entry* e = idle_[i];
      const bool expired = now >= e->expires;
      // As HikariCP: only idle connections beyond min_idle retire, so held leases do not make
      // the pool close an idle connection and open another every idle_timeout.
      const bool idle_too_long = can_retire_idle && idle_.size() > min_idle_ &&
                                 now - e->last_used >= options_.idle_timeout;
      if (expired || idle_too_long) {
        idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(i));
        close_idle_taken(e, expired ? close_reason::max_lifetime : close_reason::idle_timeout);
        continue;
      }
      if (options_.keepalive_interval > clock::duration::zero() &&
          now - std::max(e->last_used, e->last_probe) >= options_.keepalive_interval) {
        idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(i));
        e->current = entry::state::probing;
        move_idle_to_active();
        asio::co_spawn(executor_, probe(this->shared_from_this(), e),
                       report_exceptions{"a pool's keepalive probe"});
        continue;
      }
      ++i;
    }
    // Leases held too long: report once each.
    if (options_.leak_threshold > clock::duration::zero()) {
      for (const auto& e : all_) {
        if (e->current == entry::state::leased && !e->leak_reported &&
            now - e->leased_at >= options_.leak_threshold) {
          e->leak_reported = true;
          observer_->on_leak(e->leased_from, now - e->leased_at);
        }
      }
    }
    // Keep min_idle ready (and serve waiters), unless backing off after a failure.
    if (now >= backoff_until_) {
      refused_by_limit_ = false; // (as in maybe_connect: a refusal ends the round)
      while (idle_.size() + connecting_ < min_idle_ + waiters_.size() &&
             total() < options_.max_size && clock_.now() >= backoff_until_ && !refused_by_limit_) {
        start_connect();
      }
    }
  }

  static asio::awaitable<void> probe(std::shared_ptr<connection_pool> self, entry* e) {
    const bool alive = co_await self->connector_.async_validate(*e->connection);
    if (!alive || self->state_ != pool_state::open || e->evict) {
      // Evicted during the probe (evict_all closes only the idle ones it finds): closed too.
      self->close_active(e, !alive
                                ? close_reason::keepalive_failed
                                : (e->evict ? close_reason::evicted : close_reason::pool_closed));
      self->maybe_connect();
      self->drained_check();
      co_return;
    }
    e->last_probe = self->clock_.now();
    if (self->hand_to_waiter(e)) {
      co_return;
    }
    if (self->retired_) { // retired during the probe, and no one waits for it
      self->close_active(e, close_reason::retired);
      co_return;
    }
    // A probe is not a use: the connection keeps its last_used (and so its idle timeout) and
    // goes back under the ones used since, not on top of the stack.
    e->current = entry::state::idle;
    self->idle_.insert(self->idle_.begin(), e);
    self->active_count_.fetch_sub(1, std::memory_order_relaxed);
    self->idle_count_.store(self->idle_.size(), std::memory_order_relaxed);
  }

  // HikariCP skips validation of a connection used within the last 500 ms.
  static constexpr clock::duration alive_bypass_window = std::chrono::milliseconds{500};

  Executor executor_;
  Connector connector_;
  pool_options options_;
  std::atomic<std::size_t> min_idle_; // retire() lowers it; stats() reads it from any thread
  const clock& clock_;
  std::shared_ptr<pool_observer> observer_;
  default_random random_;
  resilience::grpc_backoff backoff_;
  clock::time_point backoff_until_{};
  std::error_code last_connect_error_; // since the last successful connect
  Timer housekeeping_timer_;
  Timer drain_timer_;

  pool_state state_ = pool_state::open;
  std::vector<std::unique_ptr<entry>> all_; // every open connection, whatever its state
  std::vector<entry*> idle_;                // stack: back() is the most recently used
  std::deque<waiter*> waiters_;             // first come, first served
  std::function<void()> on_overloaded_;     // see on_overloaded
  std::function<bool()> shed_on_return_;    // see shed_on_return
  bool retired_ = false;                    // retire(): nothing kept idle
  bool refused_by_limit_ = false;           // a connect of this round met the connector's limit
  std::size_t connecting_ = 0;

  // Mirrors for stats() from other threads; written only on the pool's executor.
  std::atomic<std::size_t> idle_count_{0};
  std::atomic<std::size_t> active_count_{0};
  std::atomic<std::size_t> pending_count_{0};
  std::atomic<std::size_t> connecting_count_{0};
};

template <connector Connector, class Executor, class Timer>
void basic_lease<Connector, Executor, Timer>::reset() noexcept {
  if (entry_ == nullptr) {
    return;
  }
  auto* e = std::exchange(entry_, nullptr);
  auto pool = std::move(pool_);
  if (pool->executor_.running_in_this_thread()) {
    pool->give_back(e);
  } else {
    asio::post(pool->executor_, [pool, e] { pool->give_back(e); });
  }
}

} // namespace tether::pool
