#pragma once
// The router: which route a request takes.

#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

#include "tether/http/request_target.hpp"
#include "tether/proxy/config.hpp"

namespace tether::proxy::detail {

/// The first of `routes` whose host and path prefix match the request: `authority` is what the
/// request is for (http::check_host), its host compared case-insensitively without the port;
/// the path is the target's, without its query. The asterisk-form ("OPTIONS *", about the
/// server as a whole) goes where its host's catch-all path "/" goes. A route with a
/// client_subject takes only requests whose TLS client certificate has that subject
/// (`client_subject`: the connection's, empty without one).
[[nodiscard]] std::optional<std::size_t> find_route(const std::vector<route_config>& routes,
                                                    std::string_view authority,
                                                    const http::request_target& target,
                                                    std::string_view client_subject = {});

/// The first of `routes` with `connect` whose host matches a CONNECT's `authority` (host:port,
/// the host compared case-insensitively) and lists its port. Routes without `connect` take no
/// CONNECT, and find_route gives no request to a route with it.
[[nodiscard]] std::optional<std::size_t> find_connect_route(const std::vector<route_config>& routes,
                                                            std::string_view authority,
                                                            std::string_view client_subject = {});

} // namespace tether::proxy::detail
