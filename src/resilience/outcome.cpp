#include "tether/resilience/outcome.hpp"

namespace tether::resilience {

std::string_view to_string(attempt_result result) noexcept {
  switch (result) {
  case attempt_result::success:
    return "success";
  case attempt_result::connect_failure:
    return "connect_failure";
  case attempt_result::refused:
    return "refused";
  case attempt_result::reset:
    return "reset";
  case attempt_result::timeout:
    return "timeout";
  case attempt_result::http_status:
    return "http_status";
  }
  return "unknown";
}

} // namespace tether::resilience
