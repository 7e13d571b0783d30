#include "tether/resilience/backoff.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace tether::resilience {
namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    throw std::invalid_argument(what);
  }
}

// a * b, saturating at `cap`; doubles keep the product from overflowing the integer count.
clock::duration scale_capped(clock::duration value, double factor, clock::duration cap) noexcept {
  const double scaled = static_cast<double>(value.count()) * factor;
  if (!(scaled < static_cast<double>(cap.count()))) {
    return cap;
  }
  return clock::duration{static_cast<clock::duration::rep>(scaled)};
}

} // namespace

void exponential_backoff_options::validate() const {
  require(base > clock::duration::zero(), "backoff base must be greater than 0");
  require(multiplier >= 1.0, "backoff multiplier must be at least 1");
  require(cap >= base, "backoff cap must be at least the base");
}

exponential_backoff::exponential_backoff(const exponential_backoff_options& options)
    : options_{options}, previous_{options.base} {
  options_.validate();
}

clock::duration exponential_backoff::ceiling(std::uint32_t n) const noexcept {
  const double factor = std::pow(options_.multiplier, static_cast<double>(n));
  return scale_capped(options_.base, factor, options_.cap);
}

clock::duration exponential_backoff::next(random_source& random) noexcept {
  const clock::duration top = ceiling(attempts_);
  if (attempts_ < UINT32_MAX) {
    ++attempts_;
  }
  switch (options_.mode) {
  case jitter::none:
    return top;
  case jitter::full:
    return uniform_duration(random, clock::duration::zero(), top);
  case jitter::equal:
    return top / 2 + uniform_duration(random, clock::duration::zero(), top - top / 2);
  case jitter::decorrelated: {
    const clock::duration high = scale_capped(previous_, 3.0, clock::duration::max());
    previous_ = std::min(options_.cap, uniform_duration(random, options_.base, high));
    return previous_;
  }
  }
  return top;
}

void exponential_backoff::reset() noexcept {
  attempts_ = 0;
  previous_ = options_.base;
}

void grpc_backoff_options::validate() const {
  require(initial > clock::duration::zero(), "grpc backoff initial must be greater than 0");
  require(multiplier >= 1.0, "grpc backoff multiplier must be at least 1");
  require(jitter >= 0.0 && jitter < 1.0, "grpc backoff jitter must be in [0, 1)");
  require(max >= initial, "grpc backoff max must be at least initial");
  require(min_connect_timeout >= clock::duration::zero(),
          "grpc backoff min_connect_timeout must not be negative");
}

grpc_backoff::grpc_backoff(const grpc_backoff_options& options)
    : options_{options}, current_{options.initial} {
  options_.validate();
}

clock::duration grpc_backoff::next(random_source& random) noexcept {
  // gRPC waits `initial` un-jittered before the second attempt, then grows and jitters.
  if (attempts_ == 0) {
    attempts_ = 1;
    return current_;
  }
  if (attempts_ < UINT32_MAX) {
    ++attempts_;
  }
  current_ = scale_capped(current_, options_.multiplier, options_.max);
  const auto spread =
      static_cast<clock::duration::rep>(static_cast<double>(current_.count()) * options_.jitter);
  return uniform_duration(random, current_ - clock::duration{spread},
                          current_ + clock::duration{spread});
}

void grpc_backoff::reset() noexcept {
  attempts_ = 0;
  current_ = options_.initial;
}

clock::duration grpc_backoff::connect_timeout() const noexcept {
  return std::max(options_.min_connect_timeout, current_);
}

} // namespace tether::resilience
