#include "tether/resilience/circuit_breaker.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace tether::resilience {
namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    throw std::invalid_argument(what);
  }
}

bool records(breaker_state state) noexcept {
  return state == breaker_state::closed || state == breaker_state::metrics_only ||
         state == breaker_state::half_open;
}

} // namespace

std::string_view to_string(breaker_state state) noexcept {
  switch (state) {
  case breaker_state::closed:
    return "closed";
  case breaker_state::open:
    return "open";
  case breaker_state::half_open:
    return "half_open";
  case breaker_state::disabled:
    return "disabled";
  case breaker_state::forced_open:
    return "forced_open";
  case breaker_state::metrics_only:
    return "metrics_only";
  }
  return "unknown";
}

void circuit_breaker_options::validate() const {
  require(failure_rate_threshold > 0.0F && failure_rate_threshold <= 100.0F,
          "circuit breaker failure_rate_threshold must be in (0, 100]");
  require(slow_call_rate_threshold > 0.0F && slow_call_rate_threshold <= 100.0F,
          "circuit breaker slow_call_rate_threshold must be in (0, 100]");
  require(slow_call_duration > clock::duration::zero(),
          "circuit breaker slow_call_duration must be greater than 0");
  require(window_size >= 1, "circuit breaker window_size must be at least 1");
  require(window_kind == sliding_window_kind::count_based ? window_size <= 1'000'000
                                                          : window_size <= 3600,
          "circuit breaker window_size must be at most 1000000 calls or 3600 seconds");
  require(minimum_calls >= 1, "circuit breaker minimum_calls must be at least 1");
  require(wait_in_open > clock::duration::zero(),
          "circuit breaker wait_in_open must be greater than 0");
  require(wait_multiplier >= 1.0, "circuit breaker wait_multiplier must be at least 1");
  require(max_wait_in_open == clock::duration::zero() || max_wait_in_open >= wait_in_open,
          "circuit breaker max_wait_in_open must be 0 or at least wait_in_open");
  require(permitted_calls_in_half_open >= 1,
          "circuit breaker permitted_calls_in_half_open must be at least 1");
  require(permitted_calls_in_half_open <= 1'000'000,
          "circuit breaker permitted_calls_in_half_open must be at most 1000000");
  require(max_wait_in_half_open >= clock::duration::zero(),
          "circuit breaker max_wait_in_half_open must not be negative");
}

circuit_breaker::circuit_breaker(std::string name, const circuit_breaker_options& options,
                                 const clock& clock)
    : name_{std::move(name)}, options_{(options.validate(), options)}, clock_{clock},
      state_word_{pack(0, breaker_state::closed)},
      count_window_{options.window_kind == sliding_window_kind::count_based ? options.window_size
                                                                            : 1U},
      time_window_{options.window_kind == sliding_window_kind::time_based ? options.window_size
                                                                          : 1U} {
  if (options_.window_kind == sliding_window_kind::count_based) {
    // resilience4j: a count window can never hold more calls than its size.
    options_.minimum_calls = std::min(options_.minimum_calls, options_.window_size);
  }
}

breaker_state circuit_breaker::state() const noexcept {
  return state_of(state_word_.load(std::memory_order_acquire));
}

circuit_breaker::permission circuit_breaker::try_acquire() noexcept {
  // At most a few rounds: each round either answers or moves the state forward.
  for (int round = 0; round < 4; ++round) {
    const std::uint64_t word = state_word_.load(std::memory_order_acquire);
    const std::uint32_t generation = generation_of(word);
    switch (state_of(word)) {
    case breaker_state::closed:
    case breaker_state::disabled:
    case breaker_state::metrics_only:
      return {generation, true};
    case breaker_state::forced_open:
      break;
    case breaker_state::open: {
      const auto now = clock_.now();
      if (now.time_since_epoch().count() < open_until_.load(std::memory_order_acquire)) {
        break;
      }
      pending_change change;
      {
        const std::lock_guard lock{mutex_};
        if (state_word_.load(std::memory_order_relaxed) == word) {
          change = transition_locked(breaker_state::half_open, now);
        }
      }
      notify(change);
      continue;
    }
    case breaker_state::half_open: {
      if (options_.max_wait_in_half_open > clock::duration::zero()) {
        const auto now = clock_.now();
        const auto since = half_open_since_.load(std::memory_order_acquire);
        if (now.time_since_epoch().count() - since >= options_.max_wait_in_half_open.count()) {
          pending_change change;
          {
            const std::lock_guard lock{mutex_};
            if (state_word_.load(std::memory_order_relaxed) == word) {
              change = transition_locked(breaker_state::open, now);
            }
          }
          notify(change);
          continue;
        }
      }
      // Trial permits carry the generation they were issued for, so a thread that read an older
      // half-open state cannot take a slot of a newer one.
      std::uint64_t trials = trial_permits_.load(std::memory_order_acquire);
      while (static_cast<std::uint32_t>(trials >> 32U) == generation &&
             (trials & 0xFFFFFFFFU) > 0) {
        if (trial_permits_.compare_exchange_weak(trials, trials - 1, std::memory_order_acq_rel)) {
          return {generation, true};
        }
      }
      break;
    }
    }
    not_permitted_.fetch_add(1, std::memory_order_relaxed);
    return {generation, false};
  }
  not_permitted_.fetch_add(1, std::memory_order_relaxed);
  return {0, false};
}

void circuit_breaker::record(permission p, bool failed, clock::duration elapsed) noexcept {
  if (!p.permitted) {
    return;
  }
  const std::uint64_t word = state_word_.load(std::memory_order_acquire);
  if (generation_of(word) != p.generation || !records(state_of(word))) {
    return;
  }
  const bool slow = elapsed >= options_.slow_call_duration;
  // A count window needs no time unless the state changes: skip the clock read on the hot path.
  const bool time_based = options_.window_kind == sliding_window_kind::time_based;
  const clock::time_point read = time_based ? clock_.now() : clock::time_point{};
  const auto now = [&] { return time_based ? read : clock_.now(); };
  pending_change change;
  {
    const std::lock_guard lock{mutex_};
    const std::uint64_t current = state_word_.load(std::memory_order_relaxed);
    if (current != word) {
      return; // the state moved on while this call waited for the lock
    }
    switch (state_of(current)) {
    case breaker_state::closed:
    case breaker_state::metrics_only: {
      const window_totals totals = options_.window_kind == sliding_window_kind::count_based
                                       ? count_window_.record(failed, slow)
                                       : time_window_.record(read, failed, slow);
      if (state_of(current) == breaker_state::closed && totals.calls >= options_.minimum_calls &&
          thresholds_exceeded(totals)) {
        change = transition_locked(breaker_state::open, now());
      }
      break;
    }
    case breaker_state::half_open:
      trials_.calls += 1;
      trials_.failed += failed ? 1U : 0U;
      trials_.slow += slow ? 1U : 0U;
      if (trials_.calls >= options_.permitted_calls_in_half_open) {
        change = transition_locked(
            thresholds_exceeded(trials_) ? breaker_state::open : breaker_state::closed, now());
      }
      break;
    default:
      break;
    }
  }
  notify(change);
}

void circuit_breaker::on_ignored(permission p) noexcept {
  if (!p.permitted) {
    return;
  }
  const std::lock_guard lock{mutex_};
  const std::uint64_t word = state_word_.load(std::memory_order_relaxed);
  if (generation_of(word) == p.generation && state_of(word) == breaker_state::half_open) {
    trial_permits_.fetch_add(1, std::memory_order_acq_rel);
  }
}

bool circuit_breaker::thresholds_exceeded(const window_totals& totals) const noexcept {
  return totals.failure_rate() >= options_.failure_rate_threshold ||
         totals.slow_call_rate() >= options_.slow_call_rate_threshold;
}

clock::duration circuit_breaker::wait_for_opening(std::uint32_t opening) const noexcept {
  const double factor = std::pow(options_.wait_multiplier, static_cast<double>(opening - 1));
  const double wait = static_cast<double>(options_.wait_in_open.count()) * factor;
  const auto cap = options_.max_wait_in_open > clock::duration::zero()
                       ? options_.max_wait_in_open
                       : std::chrono::duration_cast<clock::duration>(std::chrono::hours{24 * 365});
  if (!(wait < static_cast<double>(cap.count()))) {
    return cap;
  }
  return clock::duration{static_cast<clock::duration::rep>(wait)};
}

circuit_breaker::pending_change circuit_breaker::transition_locked(breaker_state to,
                                                                   clock::time_point now) noexcept {
  const std::uint64_t word = state_word_.load(std::memory_order_relaxed);
  const breaker_state from = state_of(word);
  switch (to) {
  case breaker_state::open:
    // Reopening from a failed trial waits longer; opening from closed starts the count over.
    openings_ = from == breaker_state::half_open ? openings_ + 1 : 1;
    open_until_.store((now + wait_for_opening(openings_)).time_since_epoch().count(),
                      std::memory_order_release);
    break;
  case breaker_state::half_open:
    trials_ = {};
    half_open_since_.store(now.time_since_epoch().count(), std::memory_order_release);
    trial_permits_.store((std::uint64_t{generation_of(word) + 1} << 32U) |
                             options_.permitted_calls_in_half_open,
                         std::memory_order_release);
    break;
  case breaker_state::closed:
  case breaker_state::metrics_only:
    count_window_.clear();
    time_window_.clear();
    openings_ = 0;
    break;
  case breaker_state::disabled:
  case breaker_state::forced_open:
    break;
  }
  state_word_.store(pack(generation_of(word) + 1, to), std::memory_order_release);
  return {from, to, true};
}

void circuit_breaker::notify(const pending_change& change) const {
  if (change.happened && listener_) {
    listener_(*this, change.from, change.to);
  }
}

void circuit_breaker::manual_transition(breaker_state to) {
  pending_change change;
  {
    const std::lock_guard lock{mutex_};
    // Asking for the state the breaker is in changes nothing (use reset() to start over): in
    // half-open, a second transition would hand out a fresh set of trial permits.
    if (state_of(state_word_.load(std::memory_order_relaxed)) == to) {
      return;
    }
    change = transition_locked(to, clock_.now());
  }
  notify(change);
}

void circuit_breaker::transition_to_closed() {
  manual_transition(breaker_state::closed);
}
void circuit_breaker::transition_to_open() {
  manual_transition(breaker_state::open);
}
void circuit_breaker::transition_to_half_open() {
  manual_transition(breaker_state::half_open);
}
void circuit_breaker::transition_to_disabled() {
  manual_transition(breaker_state::disabled);
}
void circuit_breaker::transition_to_forced_open() {
  manual_transition(breaker_state::forced_open);
}
void circuit_breaker::transition_to_metrics_only() {
  manual_transition(breaker_state::metrics_only);
}

void circuit_breaker::reset() {
  pending_change change;
  {
    const std::lock_guard lock{mutex_};
    change = transition_locked(breaker_state::closed, clock_.now());
    openings_ = 0;
    not_permitted_.store(0, std::memory_order_relaxed);
  }
  notify(change);
}

breaker_metrics circuit_breaker::metrics() const {
  const auto now = clock_.now();
  const std::lock_guard lock{mutex_};
  breaker_metrics m;
  m.state = state_of(state_word_.load(std::memory_order_relaxed));
  if (m.state == breaker_state::half_open) {
    m.window = trials_;
  } else if (options_.window_kind == sliding_window_kind::count_based) {
    m.window = count_window_.totals();
  } else {
    m.window = time_window_.totals(now);
  }
  m.not_permitted = not_permitted_.load(std::memory_order_relaxed);
  return m;
}

} // namespace tether::resilience
