#include "tether/pool/pool_options.hpp"

#include <cstdio>
#include <stdexcept>

namespace tether::pool {

void pool_options::validate() const {
  if (max_size < 1) {
    throw std::invalid_argument("pool max_size must be at least 1");
  }
  if (acquire_timeout < clock::duration::zero()) {
    throw std::invalid_argument("pool acquire_timeout must not be negative");
  }
  if (idle_timeout < clock::duration::zero() || max_lifetime < clock::duration::zero() ||
      keepalive_interval < clock::duration::zero() || leak_threshold < clock::duration::zero() ||
      drain_timeout < clock::duration::zero()) {
    throw std::invalid_argument(
        "pool idle_timeout, max_lifetime, keepalive_interval, leak_threshold and drain_timeout "
        "must not be negative");
  }
  if (housekeeping_period <= clock::duration::zero()) {
    throw std::invalid_argument("pool housekeeping_period must be greater than 0");
  }
  connect_backoff.validate();
}

std::string_view to_string(close_reason reason) noexcept {
  switch (reason) {
  case close_reason::idle_timeout:
    return "idle_timeout";
  case close_reason::max_lifetime:
    return "max_lifetime";
  case close_reason::broken:
    return "broken";
  case close_reason::not_usable:
    return "not_usable";
  case close_reason::validation_failed:
    return "validation_failed";
  case close_reason::keepalive_failed:
    return "keepalive_failed";
  case close_reason::pool_closed:
    return "pool_closed";
  case close_reason::not_reusable:
    return "not_reusable";
  case close_reason::evicted:
    return "evicted";
  case close_reason::reset_failed:
    return "reset_failed";
  case close_reason::shed:
    return "shed";
  case close_reason::retired:
    return "retired";
  case close_reason::detached:
    return "detached";
  }
  return "unknown";
}

namespace {

double seconds(clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

} // namespace

void logging_pool_observer::on_connect_failed(std::error_code cause) {
  std::fprintf(stderr, "tether pool %.*s: connect failed: %s\n", static_cast<int>(name_.size()),
               name_.data(), cause.message().c_str());
}

void logging_pool_observer::on_leak(const std::source_location& at, clock::duration held) {
  std::fprintf(stderr,
               "tether pool %.*s: possible leak: lease acquired at %s:%u (%s) held for %.3fs\n",
               static_cast<int>(name_.size()), name_.data(), at.file_name(),
               static_cast<unsigned>(at.line()), at.function_name(), seconds(held));
}

void logging_pool_observer::on_leak_returned(const std::source_location& at, clock::duration held) {
  std::fprintf(stderr,
               "tether pool %.*s: previously reported leak returned: acquired at %s:%u, held "
               "%.3fs\n",
               static_cast<int>(name_.size()), name_.data(), at.file_name(),
               static_cast<unsigned>(at.line()), seconds(held));
}

} // namespace tether::pool
