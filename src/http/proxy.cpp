#include "tether/http/proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <charconv>
#include <cstdlib>
#include <cstring>

#include <uriparser/Uri.h>

#include "text.hpp"

namespace tether::http {

using detail::fail;
using detail::iequals;
using detail::trim_ows;

namespace {

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string{} : std::string{value};
}

std::string first_set(const char* lower, const char* upper) {
  auto value = env(lower);
  return value.empty() && upper != nullptr ? env(upper) : value;
}

std::string range(const UriTextRangeA& r) {
  return r.first == nullptr ? std::string{} : std::string{r.first, r.afterLast};
}

std::string unescaped(std::string text) {
  if (text.empty()) {
    return text;
  }
  const char* end = uriUnescapeInPlaceA(text.data());
  text.resize(static_cast<std::size_t>(end - text.data()));
  return text;
}

// An IPv4 or IPv6 address in network byte order, or nothing.
struct ip {
  int family = 0;
  std::array<unsigned char, 16> bytes{};
};

std::optional<ip> ip_of(std::string_view text) {
  const std::string s{text};
  ip out;
  if (::inet_pton(AF_INET, s.c_str(), out.bytes.data()) == 1) {
    out.family = AF_INET;
    return out;
  }
  if (::inet_pton(AF_INET6, s.c_str(), out.bytes.data()) == 1) {
    out.family = AF_INET6;
    return out;
  }
  return std::nullopt;
}

bool in_block(const ip& address, const ip& network, unsigned prefix) {
  if (address.family != network.family) {
    return false;
  }
  const unsigned bits = address.family == AF_INET ? 32 : 128;
  prefix = prefix > bits ? bits : prefix;
  for (unsigned i = 0; i < prefix; ++i) {
    const unsigned mask = 0x80U >> (i % 8);
    if ((address.bytes[i / 8] & mask) != (network.bytes[i / 8] & mask)) {
      return false;
    }
  }
  return true;
}

bool ends_with_ci(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && iequals(text.substr(text.size() - suffix.size()), suffix);
}

// One NO_PROXY entry against host:port.
bool matches(std::string_view entry, std::string_view host, std::uint16_t port) {
  if (entry == "*") {
    return true;
  }
  // The entry's port, if it has one: "[v6]:port", "name:port", "v4:port" (a bare IPv6 address
  // has several colons and no port).
  std::string_view name = entry;
  std::string_view port_text;
  if (!name.empty() && name.front() == '[') {
    const auto close = name.find(']');
    if (close == std::string_view::npos) {
      return false;
    }
    if (close + 1 < name.size() && name[close + 1] == ':') {
      port_text = name.substr(close + 2);
    }
    name = name.substr(1, close - 1);
  } else if (const auto colon = name.find(':');
             colon != std::string_view::npos &&
             name.find(':', colon + 1) == std::string_view::npos) {
    port_text = name.substr(colon + 1);
    name = name.substr(0, colon);
  }
  if (!port_text.empty()) {
    unsigned wanted = 0;
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), wanted);
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || wanted != port) {
      return false;
    }
  }
  const auto address = ip_of(host);
  if (const auto slash = name.find('/'); slash != std::string_view::npos) {
    unsigned prefix = 0;
    const auto bits = name.substr(slash + 1);
    const auto [end, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
    const auto network = ip_of(name.substr(0, slash));
    return ec == std::errc{} && end == bits.data() + bits.size() && network && address &&
           in_block(*address, *network, prefix);
  }
  if (const auto literal = ip_of(name)) {
    return address && address->family == literal->family && address->bytes == literal->bytes;
  }
  while (!name.empty() && name.front() == '.') {
    name.remove_prefix(1);
  }
  if (name.empty() || address) {
    return false; // a name never matches an address given as such
  }
  return iequals(host, name) || (host.size() > name.size() && ends_with_ci(host, name) &&
                                 host[host.size() - name.size() - 1] == '.');
}

} // namespace

proxy_settings proxy_settings::from_environment() {
  proxy_settings out;
  // httpoxy: in a CGI script, HTTP_PROXY is what a request's "Proxy:" header set.
  out.http = first_set("http_proxy", env("REQUEST_METHOD").empty() ? "HTTP_PROXY" : nullptr);
  out.https = first_set("https_proxy", "HTTPS_PROXY");
  // A proxy the client cannot use (https://, socks5://) is left out rather than refused: the
  // environment is the machine's, and every client made with the defaults would throw.
  for (std::string* setting : {&out.http, &out.https}) {
    if (!setting->empty() && !proxy_endpoint::parse(*setting)) {
      setting->clear();
    }
  }
  out.no_proxy = first_set("no_proxy", "NO_PROXY");
  // As Go does: a proxy from the environment is for the world outside, never for this machine
  // (a test server on 127.0.0.1, a sidecar on localhost).
  if (!out.http.empty() || !out.https.empty()) {
    out.no_proxy += (out.no_proxy.empty() ? "" : ",") + std::string{"localhost,127.0.0.0/8,::1"};
  }
  return out;
}

std::optional<proxy_endpoint> proxy_endpoint::parse(std::string_view text, std::string* problem) {
  // As the setting is shown in a message: credentials never go in a log.
  std::string given{text};
  if (const auto at = given.rfind('@'); at != std::string::npos) {
    const auto scheme_end = given.find("://");
    const auto from = scheme_end == std::string::npos ? 0 : scheme_end + 3;
    if (at >= from) {
      given.replace(from, at - from, "***");
    }
  }
  std::string full{trim_ows(text)};
  if (full.find("://") == std::string::npos) {
    full = "http://" + full;
  }
  UriUriA uri{};
  const char* error = nullptr;
  if (uriParseSingleUriExA(&uri, full.data(), full.data() + full.size(), &error) != URI_SUCCESS) {
    uriFreeUriMembersA(&uri);
    return fail(problem, "the proxy \"" + given + "\" is not a URL");
  }
  proxy_endpoint out;
  const std::string scheme = range(uri.scheme);
  out.host = range(uri.hostText);
  const std::string port_text = range(uri.portText);
  const std::string user_info = range(uri.userInfo);
  uriFreeUriMembersA(&uri);
  if (!iequals(scheme, "http")) {
    return fail(problem, "the proxy \"" + given + "\" has the scheme \"" + scheme +
                             "\": only http:// proxies are taken (https requests go through them "
                             "in a CONNECT tunnel)");
  }
  if (out.host.empty()) {
    return fail(problem, "the proxy \"" + given + "\" has no host");
  }
  if (!port_text.empty()) {
    unsigned number = 0;
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), number);
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || number == 0 ||
        number > 65535) {
      return fail(problem, "the proxy \"" + given + "\" has the port \"" + port_text +
                               "\": a port is a number from 1 to 65535");
    }
    out.port = static_cast<std::uint16_t>(number);
  }
  if (!user_info.empty()) {
    const auto colon = user_info.find(':');
    out.user = unescaped(user_info.substr(0, colon));
    out.password =
        colon == std::string::npos ? std::string{} : unescaped(user_info.substr(colon + 1));
  }
  return out;
}

bool bypasses_proxy(std::string_view no_proxy, std::string_view host, std::uint16_t port) {
  while (!no_proxy.empty()) {
    const auto comma = no_proxy.find(',');
    const auto entry = trim_ows(no_proxy.substr(0, comma));
    if (!entry.empty() && matches(entry, host, port)) {
      return true;
    }
    no_proxy = comma == std::string_view::npos ? std::string_view{} : no_proxy.substr(comma + 1);
  }
  return false;
}

std::optional<int> connect_reply_status(std::string_view head) noexcept {
  // status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 4)
  constexpr std::string_view version = "HTTP/1.";
  if (head.size() < version.size() + 5 || head.substr(0, version.size()) != version ||
      (head[version.size()] != '0' && head[version.size()] != '1') ||
      head[version.size() + 1] != ' ') {
    return std::nullopt;
  }
  const auto code = head.substr(version.size() + 2, 3);
  int status = 0;
  for (const char c : code) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    status = status * 10 + (c - '0');
  }
  if (head.size() > version.size() + 5 && head[version.size() + 5] != ' ' &&
      head[version.size() + 5] != '\r') {
    return std::nullopt;
  }
  return status;
}

} // namespace tether::http
