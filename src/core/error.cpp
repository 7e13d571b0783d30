#include "tether/core/error.hpp"

namespace tether {
namespace {

class tether_category final : public std::error_category {
public:
  [[nodiscard]] const char* name() const noexcept override { return "tether"; }

  [[nodiscard]] std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
    case errc::pool_timeout:
      return "timed out waiting for a pooled connection";
    case errc::pool_closed:
      return "the connection pool is closed";
    case errc::circuit_open:
      return "circuit breaker is open";
    case errc::budget_exhausted:
      return "retry budget exhausted";
    case errc::deadline_exceeded:
      return "deadline exceeded";
    case errc::retries_exhausted:
      return "all retry attempts failed";
    case errc::overloaded:
      return "concurrency limit reached";
    case errc::host_ejected:
      return "host ejected by outlier detection";
    case errc::blocking_on_worker:
      return "blocking call on the pool's own thread (it would wait for itself); use the async API";
    }
    return "unknown tether error " + std::to_string(value);
  }
};

} // namespace

const std::error_category& error_category() noexcept {
  static const tether_category category;
  return category;
}

} // namespace tether
