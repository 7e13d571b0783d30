#include "tether/upstream/balancer.hpp"

namespace tether::upstream {

std::string_view to_string(lb_policy p) noexcept {
  switch (p) {
  case lb_policy::round_robin:
    return "round_robin";
  case lb_policy::least_request:
    return "least_request";
  case lb_policy::random:
    return "random";
  }
  return "round_robin";
}

} // namespace tether::upstream
