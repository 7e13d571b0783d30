#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tether {

/// Splits "host:port", "[v6 address]:port" or ":port" (host left empty). False when there is no
/// port, or it is not a number in [0, 65535].
bool split_host_port(std::string_view text, std::string& host, std::uint16_t& port);

} // namespace tether
