#include "router.hpp"

#include <algorithm>
#include <charconv>

#include "tether/core/text.hpp"

namespace tether::proxy::detail {

std::optional<std::size_t> find_route(const std::vector<route_config>& routes,
                                      std::string_view authority,
                                      const http::request_target& target,
                                      std::string_view client_subject) {
  // Routes compare the host case-insensitively, so it is not copied or lowered.
  const std::string_view host = http::host_of(authority);
  const bool asterisk = target.form == http::target_form::asterisk;
  std::string_view path = target.path_and_query.substr(0, target.path_and_query.find('?'));
  if (path.empty()) {
    path = "/"; // an absolute-form target without a path
  }
  for (std::size_t i = 0; i < routes.size(); ++i) {
    const auto& r = routes[i];
    if (!r.connect && (r.host == "*" || iequals(r.host, host)) &&
        (asterisk ? r.path_prefix == "/" : path.starts_with(r.path_prefix)) &&
        (r.client_subject.empty() || r.client_subject == client_subject)) {
      return i;
    }
  }
  return std::nullopt;
}

std::optional<std::size_t> find_connect_route(const std::vector<route_config>& routes,
                                              std::string_view authority,
                                              std::string_view client_subject) {
  const std::string_view host = http::host_of(authority);
  std::uint16_t port = 0;
  // The port follows the last colon ("[::1]:443": host_of gives the host without brackets).
  if (const auto colon = authority.rfind(':');
      colon != std::string_view::npos && !authority.ends_with(']')) {
    const auto digits = authority.substr(colon + 1);
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec != std::errc{} || end != digits.data() + digits.size()) {
      return std::nullopt;
    }
  }
  for (std::size_t i = 0; i < routes.size(); ++i) {
    const auto& r = routes[i];
    if (r.connect && (r.host == "*" || iequals(r.host, host)) &&
        std::find(r.connect->ports.begin(), r.connect->ports.end(), port) !=
            r.connect->ports.end() &&
        (r.client_subject.empty() || r.client_subject == client_subject)) {
      return i;
    }
  }
  return std::nullopt;
}

} // namespace tether::proxy::detail
