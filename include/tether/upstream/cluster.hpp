#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <asio/ip/address.hpp>
#include <prometheus/counter.h>

#include "tether/core/clock.hpp"
#include "tether/core/random.hpp"
#include "tether/metrics/registry.hpp"
#include "tether/metrics/resilience_metrics.hpp"
#include "tether/resilience/circuit_breaker.hpp"
#include "tether/resilience/outlier_detector.hpp"
#include "tether/resilience/resource_limit.hpp"
#include "tether/resilience/retry_budget.hpp"
#include "tether/upstream/balancer.hpp"
#include "tether/upstream/host.hpp"
#include "tether/upstream/tried_hosts.hpp"

namespace tether::upstream {

/// What a cluster is built from. Its hosts come one by one (cluster::add_host).
struct cluster_options {
  std::string name;
  lb_policy lb = lb_policy::round_robin;
  /// Envoy's thresholds over the whole cluster; none: no limit (the HTTP client's hosts).
  std::optional<resilience::cluster_limits_options> limits;
  std::optional<resilience::windowed_retry_budget_options> budget;        ///< none: no budget
  std::optional<resilience::circuit_breaker_options> breaker;             ///< per host; none: off
  std::optional<resilience::outlier_detection_options> outlier_detection; ///< none: off
  /// Hosts start out of service until their first health check passes (Envoy's rule).
  bool health_checked = false;
  /// Threads that send to the cluster, each with its own balancer and pools.
  std::size_t threads = 1;
};

/// Why a cluster's thresholds refused a request or a retry (a metric label).
enum class resource : std::uint8_t { connections, pending_requests, requests, retries, count_ };
inline constexpr std::array<const char*, 4> resource_names = {"connections", "pending_requests",
                                                              "requests", "retries"};

/// The outcome of the attempts retried, as metric labels (resilience::attempt_result).
inline constexpr std::array<const char*, 6> retry_reason_names = {
    "success", "connect_failure", "refused", "reset", "timeout", "http_status"};

/// The counters a cluster's user keeps for it (each null: not counted).
struct cluster_series {
  std::array<prometheus::Counter*, retry_reason_names.size()> retries{}; ///< by outcome retried
  prometheus::Counter* budget_exhausted = nullptr;
  /// Requests sent again after a kept-alive connection was found closed (not retries).
  prometheus::Counter* stale_resends = nullptr;
  std::array<prometheus::Counter*, resource_names.size()> overflow{};
  /// The breaker, budget, limit and outlier gauges, registered by watch().
  metrics::resilience_series gauges;
};

/// A set of hosts tether sends to as one: the hosts, how a request picks one (a balancer per
/// thread, with panic routing), Envoy's thresholds, the retry budget and outlier detection. The
/// shared state is thread-safe; each thread picks with its own balancer and counts its own
/// requests in flight (least_request), so picking takes no lock.
template <typename Connector>
class cluster {
public:
  using host_type = host<Connector>;

  /// `resilience_clock`: what breakers, budgets and ejections count time with.
  cluster(cluster_options options, const clock& resilience_clock)
      : options_{std::move(options)}, clock_{resilience_clock} {
    if (options_.limits) {
      limits = std::make_shared<resilience::cluster_limits>(*options_.limits);
    }
    if (options_.budget) {
      budget = std::make_shared<resilience::windowed_retry_budget>(*options_.budget, clock_);
    }
    if (options_.outlier_detection) {
      detector =
          std::make_shared<resilience::outlier_detector>(*options_.outlier_detection, clock_);
    }
    threads_.reserve(options_.threads);
    for (std::size_t i = 0; i < options_.threads; ++i) {
      threads_.emplace_back(options_.lb);
    }
  }
  /// A cluster that takes over from `previous`, whose settings `options` repeats (a config
  /// reload that changed only the hosts): it shares the thresholds, the retry budget and the
  /// outlier detection of `previous`, and takes the hosts that stay with adopt_host, so that
  /// what did not change keeps its state. Hosts added here join the outlier detection at
  /// take_over().
  cluster(cluster_options options, const clock& resilience_clock, const cluster& previous)
      : limits{previous.limits}, budget{previous.budget}, detector{previous.detector},
        options_{std::move(options)}, clock_{resilience_clock}, joined_{false} {
    threads_.reserve(options_.threads);
    for (std::size_t i = 0; i < options_.threads; ++i) {
      threads_.emplace_back(options_.lb);
    }
  }
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  [[nodiscard]] const std::string& name() const noexcept { return options_.name; }
  [[nodiscard]] std::size_t size() const noexcept { return hosts.size(); }
  [[nodiscard]] host_type& at(std::size_t i) noexcept { return *hosts[i]; }

  /// Adds a host, built the one way every host is: its breaker (named "cluster/host"), its
  /// outlier state, out of service until checked when health checks run, and an address cache
  /// when it is given by name. Its pools are the caller's to add (one per thread), since what a
  /// connection is made with (executor, connector) is the caller's.
  host_type& add_host(std::string address, std::uint16_t port) {
    auto h = std::make_shared<host_type>(std::move(address), port);
    if (options_.breaker) {
      h->breaker = std::make_unique<resilience::circuit_breaker>(options_.name + "/" + h->name(),
                                                                 *options_.breaker, clock_);
      h->breaker_failures = options_.breaker->failures;
    }
    if (detector && joined_) {
      h->outlier = detector->add_host(h->name());
    }
    if (options_.health_checked) {
      h->healthy = false;
      h->checked = false;
    }
    std::error_code not_ip;
    (void)asio::ip::make_address(h->address(), not_ip);
    if (not_ip) {
      h->addresses = std::make_shared<net::address_cache>();
    }
    return adopt_host(std::move(h));
  }

  /// Adds a host as it is, with its pools, breaker, outlier state and health: one that
  /// `previous` (see the constructor) has and keeps.
  host_type& adopt_host(std::shared_ptr<host_type> h) {
    for (auto& t : threads_) {
      t.active.push_back(0);
    }
    hosts.push_back(std::move(h));
    return *hosts.back();
  }

  /// The hosts of `previous` that this cluster did not adopt leave the outlier detection they
  /// share, and the hosts added here join it. Call it once nothing can stop this cluster from
  /// replacing `previous` (a reload past its last check), just before requests move over:
  /// until then the detection counts the hosts of `previous` only, which runs alone.
  void take_over(const cluster& previous) {
    if (!detector || joined_) {
      return;
    }
    joined_ = true;
    for (const auto& h : previous.hosts) {
      if (h->outlier && std::find(hosts.begin(), hosts.end(), h) == hosts.end()) {
        detector->remove_host(h->outlier);
      }
    }
    for (const auto& h : hosts) {
      if (!h->outlier) {
        h->outlier = detector->add_host(h->name());
      }
    }
  }

  /// Registers the gauges of the cluster's limits, budget and outlier detection, and of each
  /// host's breaker (labels plus "endpoint", or `host_label`), in `registry`.
  void watch(metrics::registry& registry, const metrics::labels& labels,
             const std::string& host_label = "endpoint") {
    if (limits) {
      series.gauges.watch(registry, *limits, labels);
    }
    if (budget) {
      series.gauges.watch(registry, *budget, labels);
    }
    if (detector) {
      series.gauges.watch(registry, *detector, labels);
    }
    for (const auto& h : hosts) {
      if (h->breaker) {
        series.gauges.watch(registry, *h->breaker,
                            metrics::with_label(labels, host_label, h->name()));
      }
    }
  }

  /// The host of thread `thread` for an attempt, among those `tried` has not (upstream::balancer).
  balancer::choice choose(std::size_t thread, const tried_hosts& tried, random_source& random) {
    auto& t = threads_[thread];
    thread_hosts view{*this, t};
    return t.picker.choose(view, tried, random);
  }

  /// Requests in flight from thread `thread` at host `i`, counted here and on the host.
  class in_flight {
  public:
    in_flight(cluster& c, std::size_t thread, std::size_t i)
        : local_{c.threads_[thread].active[i]}, host_{*c.hosts[i]} {
      ++local_;
      host_.active.fetch_add(1, std::memory_order_relaxed);
    }
    in_flight(const in_flight&) = delete;
    in_flight& operator=(const in_flight&) = delete;
    ~in_flight() {
      --local_;
      host_.active.fetch_sub(1, std::memory_order_relaxed);
    }

  private:
    std::uint32_t& local_;
    host_type& host_;
  };

  /// Shared with the cluster that takes over from this one, for the hosts it keeps.
  std::vector<std::shared_ptr<host_type>> hosts;
  /// Null: no thresholds. Shared: a connector counting its connections against them may
  /// outlive the cluster (its pool closing on another thread), and so may the cluster that
  /// takes over from it.
  std::shared_ptr<resilience::cluster_limits> limits;
  std::shared_ptr<resilience::windowed_retry_budget> budget; ///< null: no budget
  std::shared_ptr<resilience::outlier_detector> detector;    ///< null: no outlier detection
  cluster_series series;

  /// Called when outlier detection ejects a host (a log line, say), on the reporting thread.
  std::function<void(const host_type&)> on_ejection;

  /// Reports how an attempt at `h` ended: its breaker, outlier detection, counters.
  void report(host_type& h, resilience::circuit_breaker::permission p,
              const resilience::attempt_outcome& outcome, clock::duration took) {
    if (h.report(p, outcome, took, detector.get()) && on_ejection) {
      on_ejection(h);
    }
  }

  /// Counts a refusal by a threshold.
  void overflowed(resource r) {
    if (auto* c = series.overflow[static_cast<std::size_t>(r)]) {
      c->Increment();
    }
  }

private:
  struct thread_state {
    explicit thread_state(lb_policy p) : picker{p} {}
    balancer picker;
    std::vector<std::uint32_t> active; // per host
  };

  // The hosts as one thread's balancer sees them (upstream::balancer's Hosts).
  struct thread_hosts {
    cluster& c;
    thread_state& t;
    [[nodiscard]] std::size_t size() const noexcept { return c.hosts.size(); }
    [[nodiscard]] bool in_service(std::size_t i) const noexcept { return c.hosts[i]->in_service(); }
    [[nodiscard]] std::uint32_t active(std::size_t i) const noexcept { return t.active[i]; }
    resilience::circuit_breaker::permission permit(std::size_t i) { return c.hosts[i]->permit(); }
  };

  cluster_options options_;
  const clock& clock_;
  bool joined_ = true; // its hosts are in the outlier detection (false: not taken over yet)
  std::vector<thread_state> threads_;
};

} // namespace tether::upstream
