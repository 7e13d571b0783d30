#include "tether/http/request_target.hpp"

#include <algorithm>
#include <array>

#include "text.hpp"

namespace tether::http {
namespace {

using detail::iequals;

bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}
bool is_hex(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
// unreserved and sub-delims (RFC 3986 2.2, 2.3): what a reg-name takes besides "%XX". A table:
// every request's Host goes through it.
constexpr std::array<bool, 256> name_chars = [] {
  std::array<bool, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) {
    t[static_cast<unsigned char>(c)] = true;
    t[static_cast<unsigned char>(c - 'a' + 'A')] = true;
  }
  for (int c = '0'; c <= '9'; ++c) {
    t[static_cast<unsigned char>(c)] = true;
  }
  for (const char c : std::string_view{"-._~!$&'()*+,;="}) {
    t[static_cast<unsigned char>(c)] = true;
  }
  return t;
}();

bool is_name_char(char c) noexcept {
  return name_chars[static_cast<unsigned char>(c)];
}

// An IPv6 (or IPvFuture) literal between brackets: hex digits, colons and dots, at least one
// colon; the address itself is the resolver's business.
bool valid_ip_literal(std::string_view inside) noexcept {
  return !inside.empty() && inside.find(':') != std::string_view::npos &&
         std::all_of(inside.begin(), inside.end(),
                     [](char c) { return is_hex(c) || c == ':' || c == '.'; });
}

bool valid_port(std::string_view port) noexcept {
  if (port.size() > 5) {
    return false;
  }
  unsigned value = 0;
  for (const char c : port) {
    if (!is_digit(c)) {
      return false;
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value <= 65535;
}

// host and port of an authority (the port empty when absent).
void split(std::string_view authority, std::string_view& host, std::string_view& port) noexcept {
  std::size_t end_of_host = 0;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    end_of_host = close == std::string_view::npos ? authority.size() : close + 1;
  } else {
    end_of_host = std::min(authority.find(':'), authority.size());
  }
  host = authority.substr(0, end_of_host);
  port = end_of_host < authority.size() ? authority.substr(end_of_host + 1) : std::string_view{};
}

} // namespace

bool is_valid_authority(std::string_view value) noexcept {
  if (value.empty()) {
    return false;
  }
  std::size_t i = 0;
  if (value.front() == '[') {
    const auto close = value.find(']');
    if (close == std::string_view::npos || !valid_ip_literal(value.substr(1, close - 1))) {
      return false;
    }
    i = close + 1;
  } else {
    // One pass over a reg-name or IPv4 address (every request's Host comes through here).
    for (; i < value.size() && value[i] != ':'; ++i) {
      if (value[i] == '%') {
        if (i + 2 >= value.size() || !is_hex(value[i + 1]) || !is_hex(value[i + 2])) {
          return false;
        }
        i += 2;
      } else if (!is_name_char(value[i])) {
        return false;
      }
    }
    if (i == 0) {
      return false;
    }
  }
  if (i == value.size()) {
    return true;
  }
  if (value[i] != ':') {
    return false; // after the host only ":" and a port may come
  }
  return valid_port(value.substr(i + 1));
}

std::string_view host_of(std::string_view authority) noexcept {
  std::string_view host;
  std::string_view port;
  split(authority, host, port);
  if (host.size() >= 2 && host.starts_with('[') && host.ends_with(']')) {
    host = host.substr(1, host.size() - 2);
  }
  return host;
}

bool same_authority(std::string_view a, std::string_view b, std::string_view scheme) noexcept {
  std::string_view a_host;
  std::string_view a_port;
  std::string_view b_host;
  std::string_view b_port;
  split(a, a_host, a_port);
  split(b, b_host, b_port);
  const std::string_view default_port = iequals(scheme, "https") ? "443" : "80";
  return iequals(a_host, b_host) &&
         (a_port.empty() ? default_port : a_port) == (b_port.empty() ? default_port : b_port);
}

std::error_code read_request_target(std::string_view method, std::string_view target,
                                    request_target& out) {
  out = {};
  const bool connect = method == "CONNECT";
  if (target == "*") {
    out.form = target_form::asterisk;
    return method == "OPTIONS" ? std::error_code{} : make_error_code(errc::invalid_target);
  }
  if (connect) {
    // CONNECT takes host:port, and the port is not optional (RFC 9110 9.3.6).
    std::string_view host;
    std::string_view port;
    split(target, host, port);
    out.form = target_form::authority;
    out.authority = target;
    return is_valid_authority(target) && !port.empty() ? std::error_code{}
                                                       : make_error_code(errc::invalid_target);
  }
  if (target.starts_with('/')) {
    out.form = target_form::origin;
    out.path_and_query = target;
    return {};
  }
  // absolute-form: scheme "://" authority [path-abempty] ["?" query]
  const auto scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos) {
    return make_error_code(errc::invalid_target);
  }
  out.form = target_form::absolute;
  out.scheme = target.substr(0, scheme_end);
  if (!iequals(out.scheme, "http") && !iequals(out.scheme, "https")) {
    return make_error_code(errc::invalid_target);
  }
  const auto rest = target.substr(scheme_end + 3);
  const auto authority_end = std::min(rest.find_first_of("/?#"), rest.size());
  out.authority = rest.substr(0, authority_end);
  out.path_and_query = rest.substr(authority_end);
  if (out.path_and_query.starts_with('#')) {
    return make_error_code(errc::invalid_target); // a fragment is never sent (RFC 9110 4.2.5)
  }
  return is_valid_authority(out.authority) ? std::error_code{}
                                           : make_error_code(errc::invalid_target);
}

host_fields find_host(std::span<const header> fields) noexcept {
  host_fields host;
  for (const auto& f : fields) {
    if (f.name.size() == 4 && iequals(f.name, "host")) {
      if (host.count++ == 0) {
        host.value = f.value;
      }
    }
  }
  return host;
}

std::error_code check_host(const host_fields& host, int version_minor, const request_target& target,
                           std::string_view& authority) {
  if (host.count > 1) {
    return make_error_code(errc::duplicate_host);
  }
  if (host.count == 0) {
    if (version_minor >= 1) {
      return make_error_code(errc::missing_host);
    }
    authority = target.authority; // HTTP/1.0 without Host: what the target says, if anything
    return {};
  }
  if (!is_valid_authority(host.value)) {
    return make_error_code(errc::invalid_host);
  }
  if (target.form == target_form::absolute || target.form == target_form::authority) {
    if (!same_authority(host.value, target.authority, target.scheme)) {
      return make_error_code(errc::host_mismatch);
    }
    authority = target.authority;
    return {};
  }
  authority = host.value;
  return {};
}

std::error_code check_host(std::span<const header> fields, int version_minor,
                           const request_target& target, std::string_view& authority) {
  return check_host(find_host(fields), version_minor, target, authority);
}

} // namespace tether::http
