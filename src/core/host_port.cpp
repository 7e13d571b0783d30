#include "tether/core/host_port.hpp"

#include <charconv>

namespace tether {

bool split_host_port(std::string_view text, std::string& host, std::uint16_t& port) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return false;
  }
  auto h = text.substr(0, colon);
  const auto p = text.substr(colon + 1);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
    h = h.substr(1, h.size() - 2);
  } else if (h.find(':') != std::string_view::npos) {
    return false; // an IPv6 address needs its brackets, or the port is ambiguous
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (p.empty() || ec != std::errc{} || end != p.data() + p.size() || value > 65535) {
    return false;
  }
  host = std::string{h};
  port = static_cast<std::uint16_t>(value);
  return true;
}

} // namespace tether
