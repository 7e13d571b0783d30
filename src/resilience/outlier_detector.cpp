#include "tether/resilience/outlier_detector.hpp"

#include <algorithm>
#include <stdexcept>

namespace tether::resilience {

void outlier_detection_options::validate() const {
  if (interval <= clock::duration::zero()) {
    throw std::invalid_argument("outlier detection interval must be greater than 0");
  }
  if (base_ejection_time <= clock::duration::zero()) {
    throw std::invalid_argument("outlier detection base_ejection_time must be greater than 0");
  }
  if (max_ejection_time < clock::duration::zero()) {
    throw std::invalid_argument("outlier detection max_ejection_time must not be negative");
  }
  if (!(max_ejection_percent >= 0.0 && max_ejection_percent <= 100.0)) {
    throw std::invalid_argument("outlier detection max_ejection_percent must be in [0, 100]");
  }
}

outlier_detector::outlier_detector(const outlier_detection_options& options, const clock& clock)
    : options_{options}, clock_{clock} {
  options_.validate();
}

std::shared_ptr<outlier_host> outlier_detector::add_host(std::string address) {
  auto host = std::make_shared<outlier_host>(std::move(address));
  const std::lock_guard lock{mutex_};
  hosts_.push_back(host);
  return host;
}

void outlier_detector::remove_host(const std::shared_ptr<outlier_host>& host) {
  const std::lock_guard lock{mutex_};
  const auto it = std::find(hosts_.begin(), hosts_.end(), host);
  if (it == hosts_.end()) {
    return;
  }
  if ((*it)->ejected()) {
    --ejected_;
  }
  (*it)->removed_ = true;
  hosts_.erase(it);
}

clock::duration outlier_detector::ejection_time(std::uint32_t multiplier) const noexcept {
  // Envoy: base * multiplier, but never past max(base, max_ejection_time).
  const clock::duration cap = std::max(options_.base_ejection_time, options_.max_ejection_time);
  if (multiplier == 0) {
    return clock::duration::zero();
  }
  if (options_.base_ejection_time > cap / multiplier) {
    return cap;
  }
  return options_.base_ejection_time * multiplier;
}

bool outlier_detector::report(outlier_host& host, const attempt_outcome& outcome) {
  if (host.ejected()) {
    return false;
  }
  const bool counts_5xx = outcome.is_5xx();
  const bool counts_gateway = outcome.is_gateway_error();
  // Successes are the common case: only write when a streak is there to break, so hosts that
  // are doing well cost one read per report.
  if (!counts_5xx) {
    if (host.consecutive_5xx_.load(std::memory_order_relaxed) != 0) {
      host.consecutive_5xx_.store(0, std::memory_order_relaxed);
    }
  }
  if (!counts_gateway) {
    if (host.consecutive_gateway_.load(std::memory_order_relaxed) != 0) {
      host.consecutive_gateway_.store(0, std::memory_order_relaxed);
    }
  }
  bool trip = false;
  if (counts_5xx) {
    const auto n = host.consecutive_5xx_.fetch_add(1, std::memory_order_relaxed) + 1;
    trip = trip || (options_.consecutive_5xx != 0 && n >= options_.consecutive_5xx);
  }
  if (counts_gateway) {
    const auto n = host.consecutive_gateway_.fetch_add(1, std::memory_order_relaxed) + 1;
    trip = trip ||
           (options_.consecutive_gateway_failure != 0 && n >= options_.consecutive_gateway_failure);
  }
  return trip && try_eject(host);
}

bool outlier_detector::try_eject(outlier_host& host) {
  {
    const std::lock_guard lock{mutex_};
    if (host.removed_ || host.ejected()) {
      return false;
    }
    // One host may always go; beyond that, never more than max_ejection_percent of the hosts.
    const auto total = static_cast<double>(hosts_.size());
    const auto after = static_cast<double>(ejected_ + 1);
    if (ejected_ != 0 && after * 100.0 > options_.max_ejection_percent * total) {
      return false;
    }
    ++ejected_;
    host.consecutive_5xx_.store(0, std::memory_order_relaxed);
    host.consecutive_gateway_.store(0, std::memory_order_relaxed);
    host.multiplier_.fetch_add(1, std::memory_order_relaxed);
    host.times_ejected_.fetch_add(1, std::memory_order_relaxed);
    host.ejected_at_ = clock_.now();
    host.ejected_.store(true, std::memory_order_release);
  }
  if (listener_) {
    listener_(host, true);
  }
  return true;
}

std::vector<std::shared_ptr<outlier_host>> outlier_detector::on_interval() {
  std::vector<std::shared_ptr<outlier_host>> returned;
  const auto now = clock_.now();
  {
    const std::lock_guard lock{mutex_};
    for (const auto& host : hosts_) {
      const std::uint32_t multiplier = host->multiplier_.load(std::memory_order_relaxed);
      if (host->ejected()) {
        if (now - host->ejected_at_ >= ejection_time(multiplier)) {
          host->ejected_.store(false, std::memory_order_release);
          host->unejected_at_ = now;
          --ejected_;
          returned.push_back(host);
        }
      } else if (multiplier > 0 && now - host->unejected_at_ >= options_.interval) {
        // A host that stayed in for a whole interval earns back one step of its multiplier.
        host->multiplier_.store(multiplier - 1, std::memory_order_relaxed);
        // Step the mark by one interval, not to `now`, so a sweep that runs late does not cost
        // the host its next step.
        host->unejected_at_ += options_.interval;
      }
    }
  }
  if (listener_) {
    for (const auto& host : returned) {
      listener_(*host, false);
    }
  }
  return returned;
}

bool outlier_detector::on_health_check_passed(outlier_host& host) {
  {
    const std::lock_guard lock{mutex_};
    if (host.removed_ || !host.ejected()) {
      return false; // a removed host was taken off the ejected count already
    }
    host.ejected_.store(false, std::memory_order_release);
    host.unejected_at_ = clock_.now();
    --ejected_;
  }
  if (listener_) {
    listener_(host, false);
  }
  return true;
}

std::size_t outlier_detector::host_count() const {
  const std::lock_guard lock{mutex_};
  return hosts_.size();
}

std::size_t outlier_detector::ejected_count() const {
  const std::lock_guard lock{mutex_};
  return ejected_;
}

} // namespace tether::resilience
