#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tether/core/random.hpp"
#include "tether/resilience/circuit_breaker.hpp"
#include "tether/upstream/tried_hosts.hpp"

namespace tether::upstream {

/// How a cluster picks the host for a request.
enum class lb_policy : std::uint8_t {
  round_robin,   ///< each in turn
  least_request, ///< the fewer requests in flight of two drawn at random (Envoy's default)
  random,        ///< one drawn at random
};

/// "round_robin", "least_request", "random".
[[nodiscard]] std::string_view to_string(lb_policy p) noexcept;

/// What a balancer needs to know of a cluster's hosts, index by index: a host set (the proxy's,
/// or a test's fake) models it.
///   std::size_t size() const;
///   bool in_service(std::size_t) const;   // not taken out by health checks or ejected
///   std::uint32_t active(std::size_t) const; // requests in flight (least_request)
///   resilience::circuit_breaker::permission permit(std::size_t); // asks the host's breaker
/// A host without a breaker always permits.

/// The host of a cluster an attempt goes to. One per cluster and thread (its rotation is not
/// shared). Among the hosts in service that the request has not tried yet (a retry goes
/// elsewhere when it can); among the in-service hosts it tried when none is left or every
/// untried one's breaker refuses; among every host when none is in service (Envoy's panic
/// routing: better to try than to refuse everything). A host whose breaker refuses is passed
/// over for the next candidate, from a rotation of its own, so an open host's share spreads
/// evenly over the others instead of landing on its neighbour.
class balancer {
public:
  /// What choose() found: a host with its breaker's permission, or none (every breaker refused).
  struct choice {
    std::size_t index = 0;
    resilience::circuit_breaker::permission permission{};
    bool found = false;
  };

  explicit balancer(lb_policy policy) : policy_{policy} {}

  [[nodiscard]] lb_policy policy() const noexcept { return policy_; }

  template <typename Hosts>
  choice choose(Hosts& hosts, const tried_hosts& tried, random_source& random) {
    const auto n = hosts.size();
    if (n == 1) {
      // Whatever the policy, health or tries, the rules below come to the one host if its
      // breaker permits: said at once (the HTTP client's clusters are all of one host).
      const auto permission = hosts.permit(0);
      return {0, permission, static_cast<bool>(permission)};
    }
    bool any_in_service = false;
    candidates_.clear();
    for (std::size_t i = 0; i < n; ++i) {
      if (hosts.in_service(i)) {
        any_in_service = true;
        if (!tried.has(i)) {
          candidates_.push_back(i);
        }
      }
    }
    if (!candidates_.empty()) {
      if (const auto got = pick(hosts, tried.empty(), random); got.found) {
        return got;
      }
    }
    // No untried host, or every untried host's breaker refused: the hosts already tried.
    candidates_.clear();
    for (std::size_t i = 0; i < n; ++i) {
      if (hosts.in_service(i) && tried.has(i)) {
        candidates_.push_back(i);
      }
    }
    if (!candidates_.empty()) {
      if (const auto got = pick(hosts, false, random); got.found) {
        return got;
      }
    }
    if (!any_in_service) {
      for (std::size_t i = 0; i < n; ++i) {
        candidates_.push_back(i);
      }
      return pick(hosts, tried.empty(), random);
    }
    return {};
  }

private:
  // The first of the candidates by the policy whose breaker permits. Round robin moves once per
  // request: a retry takes the candidate after it without moving the rotation.
  template <typename Hosts>
  choice pick(Hosts& hosts, bool first_attempt, random_source& random) {
    const auto m = candidates_.size();
    std::size_t pos = 0;
    switch (policy_) {
    case lb_policy::round_robin:
      pos = (first_attempt ? next_++ : next_) % m;
      break;
    case lb_policy::random:
      pos = static_cast<std::size_t>(random.next() % m);
      break;
    case lb_policy::least_request: {
      const auto a = static_cast<std::size_t>(random.next() % m);
      const auto b = static_cast<std::size_t>(random.next() % m);
      pos = hosts.active(candidates_[b]) < hosts.active(candidates_[a]) ? b : a;
      break;
    }
    }
    while (!candidates_.empty()) {
      const auto index = candidates_[pos];
      if (auto permission = hosts.permit(index)) {
        return {index, permission, true};
      }
      candidates_.erase(candidates_.begin() + static_cast<std::ptrdiff_t>(pos));
      if (!candidates_.empty()) {
        pos = spill_++ % candidates_.size();
      }
    }
    return {};
  }

  lb_policy policy_;
  std::size_t next_ = 0;                // round robin
  std::size_t spill_ = 0;               // where the requests of a host whose breaker refuses go
  std::vector<std::size_t> candidates_; // choose()'s scratch, kept for its capacity
};

} // namespace tether::upstream
