#include "tether/http/message.hpp"
#include "tether/http/fields.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <stdexcept>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <uriparser/Uri.h>

#include "text.hpp"

namespace tether::http {

using detail::fail;
using detail::iequals;
using detail::is_tchar;

namespace {

bool is_ctl_or_space(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u <= 0x20 || u == 0x7F;
}

/// A byte as a user reads it in a message: 'x' when printable, 0x0D otherwise.
std::string shown(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u > 0x20 && u < 0x7F) {
    return std::string{"'"} + c + "'";
  }
  std::array<char, 8> hex{};
  std::snprintf(hex.data(), hex.size(), "0x%02X", u);
  return hex.data();
}

/// `text` quoted for a message, cut at 80 bytes and with its control bytes escaped: what a user
/// passed in may be long, or hold the very bytes that made it wrong.
std::string quoted(std::string_view text) {
  std::string out{"\""};
  for (const char c : text.substr(0, 80)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) {
      out += "\\x" + shown(c).substr(2);
    } else {
      out += c;
    }
  }
  out += text.size() > 80 ? "...\"" : "\"";
  return out;
}

/// Sets `*problem` when given; nullopt, for the caller to return.
} // namespace

// ---------------------------------------------------------------------------------------------
// URL, request, response

std::optional<url> url::parse(std::string_view text, std::string* problem) {
  constexpr std::string_view http = "http://";
  constexpr std::string_view https = "https://";
  const std::string_view whole = text;
  url out;
  if (text.size() >= https.size() && iequals(text.substr(0, https.size()), https)) {
    out.tls = true;
    out.port = 443;
    text.remove_prefix(https.size());
  } else if (text.size() >= http.size() && iequals(text.substr(0, http.size()), http)) {
    text.remove_prefix(http.size());
  } else {
    const auto colon = text.find(':');
    return fail(problem,
                "the URL " + quoted(whole) +
                    (colon == std::string_view::npos || colon == 0
                         ? " has no scheme"
                         : " has the scheme \"" + std::string{text.substr(0, colon)} + "\"") +
                    ": only http:// and https:// URLs are taken");
  }
  if (const auto bad = std::find_if(text.begin(), text.end(), is_ctl_or_space); bad != text.end()) {
    return fail(problem, "the URL " + quoted(whole) + " holds " +
                             (*bad == ' ' ? std::string{"a space"} : "the byte " + shown(*bad)) +
                             " at offset " +
                             std::to_string(whole.size() - text.size() +
                                            static_cast<std::size_t>(bad - text.begin())) +
                             ": encode it (%20 for a space)");
  }
  const auto authority_end = text.find_first_of("/?#");
  std::string_view authority = text.substr(0, authority_end);
  std::string_view rest = authority_end == std::string_view::npos ? "" : text.substr(authority_end);
  if (authority.empty()) {
    return fail(problem, "the URL " + quoted(whole) + " has no host");
  }
  if (authority.find('@') != std::string_view::npos) {
    return fail(problem, "the URL " + quoted(whole) +
                             " holds user information (user@host): give credentials in an "
                             "Authorization header instead");
  }
  std::string_view port_text;
  bool has_port = false;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos || close == 1) {
      return fail(problem, "the URL " + quoted(whole) +
                               " has an IPv6 address without its closing ']', or an empty one");
    }
    out.host = authority.substr(1, close - 1);
    in6_addr address{};
    if (::inet_pton(AF_INET6, out.host.c_str(), &address) != 1) {
      return fail(problem, "the URL " + quoted(whole) + " has \"[" + out.host +
                               "]\" where an IPv6 address goes: brackets hold only one");
    }
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return fail(problem, "the URL " + quoted(whole) +
                                 " has something other than :port after its IPv6 address");
      }
      has_port = true;
      port_text = after.substr(1);
    }
  } else {
    const auto colon = authority.find(':');
    out.host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = authority.substr(colon + 1);
    }
  }
  if (out.host.empty()) {
    return fail(problem, "the URL " + quoted(whole) + " has no host");
  }
  if (has_port) {
    unsigned port = 0;
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc{} || end != port_text.data() + port_text.size() ||
        port == 0 || port > 65535) {
      return fail(problem, "the URL " + quoted(whole) + " has the port \"" +
                               std::string{port_text} + "\": a port is a number from 1 to 65535");
    }
    out.port = static_cast<std::uint16_t>(port);
  }
  // The fragment is the client's own; it is never sent.
  rest = rest.substr(0, rest.find('#'));
  out.target = rest.empty() ? "/" : (rest.front() == '?' ? "/" + std::string{rest} : rest);
  return out;
}

request request::to(std::string_view method, std::string_view text) {
  std::string problem;
  auto u = url::parse(text, &problem);
  if (!u) {
    throw std::invalid_argument{"http::request::to: " + problem};
  }
  request r;
  r.method = method;
  r.host = std::move(u->host);
  r.port = u->port;
  r.target = std::move(u->target);
  r.tls = u->tls;
  if (auto wrong = r.problem(); !wrong.empty()) {
    throw std::invalid_argument{"http::request::to: " + wrong};
  }
  return r;
}

// What the user gives must not be able to change the framing of what goes on the wire.
std::string request::problem() const {
  if (method.empty()) {
    return "the method is empty";
  }
  if (body_source && !body.empty()) {
    return "the request has both a body and a body_source: give one";
  }
  if (body_length && !body_source) {
    return "body_length is for a body_source: a body's length is its size";
  }
  if (const auto bad = std::find_if_not(method.begin(), method.end(), is_tchar);
      bad != method.end()) {
    return "the method " + quoted(method) + " holds " + shown(*bad) +
           ", which a method cannot (RFC 9110 9.1: a token)";
  }
  if (host.empty()) {
    return "the host is empty";
  }
  if (const auto bad = std::find_if(host.begin(), host.end(),
                                    [](char c) {
                                      return is_ctl_or_space(c) || std::string_view{"/?#@[]"}.find(
                                                                       c) != std::string_view::npos;
                                    });
      bad != host.end()) {
    return "the host " + quoted(host) + " holds " + shown(*bad) +
           ", which a host name or address cannot (an IPv6 address goes without brackets)";
  }
  const bool asterisk = target == "*" && method == "OPTIONS";
  if (target.empty() || (target.front() != '/' && !asterisk)) {
    return "the target " + quoted(target) +
           " does not start with '/' (only OPTIONS may have the target \"*\")";
  }
  if (const auto bad = std::find_if(target.begin(), target.end(), is_ctl_or_space);
      bad != target.end()) {
    return "the target " + quoted(target) + " holds " + shown(*bad) + " at offset " +
           std::to_string(bad - target.begin()) + ": encode it (%20 for a space)";
  }
  if ((timeout && *timeout < clock::duration::zero()) ||
      (per_try_timeout && *per_try_timeout < clock::duration::zero())) {
    return "a timeout is negative (zero turns one off)";
  }
  // Framing and hop-by-hop fields: the client writes them itself, from the body and the
  // connection it uses; a second value would let two readers of the message frame it apart.
  static constexpr std::array<std::string_view, 8> owned = {
      "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
      "trailer",        "proxy-connection"};
  for (const auto& f : headers) {
    if (f.name.empty()) {
      return "a header has an empty name";
    }
    if (const auto bad = std::find_if_not(f.name.begin(), f.name.end(), is_tchar);
        bad != f.name.end()) {
      return "the header name " + quoted(f.name) + " holds " + shown(*bad) +
             ", which a field name cannot (RFC 9110 5.1: a token)";
    }
    for (std::size_t i = 0; i < f.value.size(); ++i) {
      const auto u = static_cast<unsigned char>(f.value[i]);
      if ((u < 0x20 && u != '\t') || u == 0x7F) {
        return "the value of the header " + f.name + " holds the byte " + shown(f.value[i]) +
               " at offset " + std::to_string(i) +
               ": a field value cannot hold control bytes (CR and LF would end it)";
      }
    }
    for (const auto name : owned) {
      if (iequals(f.name, name)) {
        if (name == "content-length" || name == "transfer-encoding") {
          return "the header " + f.name +
                 " is the client's to set: it frames the body itself (Content-Length from "
                 "request::body)";
        }
        return "the header " + f.name +
               " is the client's to set: it is about the connection, which the client manages";
      }
    }
  }
  return {};
}

const std::string* response::find(std::string_view name) const noexcept {
  const auto* f = find_field(headers, name);
  return f != nullptr ? &f->value : nullptr;
}

std::string request::target_url() const {
  std::string out{tls ? "https://" : "http://"};
  if (host.find(':') != std::string::npos) {
    out.append("[").append(host).append("]");
  } else {
    out.append(host);
  }
  if (port != (tls ? 443 : 80)) {
    out.append(":").append(std::to_string(port));
  }
  return out.append(target);
}

// ---------------------------------------------------------------------------------------------
// Redirects

bool is_redirect(int status) noexcept {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

namespace {

// A URI parsed by uriparser, freed with it. Reference resolution (RFC 3986 5.2, dot segments
// included) is uriparser's, not written here again.
struct parsed_uri {
  UriUriA uri{};
  bool ok = false;

  explicit parsed_uri(std::string_view text) {
    const char* error = nullptr;
    ok = uriParseSingleUriExA(&uri, text.data(), text.data() + text.size(), &error) == URI_SUCCESS;
  }
  parsed_uri() = default;
  parsed_uri(const parsed_uri&) = delete;
  parsed_uri& operator=(const parsed_uri&) = delete;
  ~parsed_uri() { uriFreeUriMembersA(&uri); }

  [[nodiscard]] std::optional<std::string> text() const {
    int length = 0;
    if (uriToStringCharsRequiredA(&uri, &length) != URI_SUCCESS) {
      return std::nullopt;
    }
    std::string out(static_cast<std::size_t>(length) + 1, '\0');
    int written = 0;
    if (uriToStringA(out.data(), &uri, length + 1, &written) != URI_SUCCESS) {
      return std::nullopt;
    }
    out.resize(static_cast<std::size_t>(written > 0 ? written - 1 : 0)); // less its NUL
    return out;
  }
};

// An IPv6 address in its RFC 5952 form (uriparser writes every group out in full); any other
// host as it is.
std::string canonical_host(const std::string& host) {
  in6_addr address{};
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (host.find(':') == std::string::npos || ::inet_pton(AF_INET6, host.c_str(), &address) != 1 ||
      ::inet_ntop(AF_INET6, &address, text.data(), text.size()) == nullptr) {
    return host;
  }
  return text.data();
}

bool starts_with_ci(std::string_view text, std::string_view prefix) noexcept {
  return text.size() >= prefix.size() && iequals(text.substr(0, prefix.size()), prefix);
}

void drop_fields(std::vector<field>& fields, bool (*drop)(std::string_view)) {
  std::erase_if(fields, [drop](const field& f) { return drop(f.name); });
}

} // namespace

std::optional<request> redirected(const request& r, int status, std::string_view location,
                                  std::string* problem) {
  const std::string base_text = r.target_url();
  const parsed_uri base{base_text};
  const parsed_uri reference{location};
  if (!base.ok || !reference.ok) {
    return fail(problem, "the redirect's Location " + quoted(location) +
                             " is not a URI reference (RFC 3986)");
  }
  parsed_uri resolved;
  if (uriAddBaseUriA(&resolved.uri, &reference.uri, &base.uri) != URI_SUCCESS) {
    return fail(problem, "the redirect's Location " + quoted(location) +
                             " cannot be resolved against " + quoted(base_text));
  }
  const auto text = resolved.text();
  if (!text) {
    return fail(problem, "the redirect's Location " + quoted(location) +
                             " cannot be resolved against " + quoted(base_text));
  }
  std::string wrong;
  auto target = url::parse(*text, &wrong);
  if (!target) {
    return fail(problem,
                "the redirect's Location " + quoted(location) + " cannot be followed: " + wrong);
  }

  request next = r;
  next.host = canonical_host(target->host);
  next.port = target->port;
  next.target = std::move(target->target);
  next.tls = target->tls;
  const bool to_get = (status == 303 && r.method != "HEAD") ||
                      ((status == 301 || status == 302) && r.method == "POST");
  if (!to_get && r.body_source) {
    return fail(problem, "a " + std::to_string(status) +
                             " asks for the body again, and a "
                             "request::body_source is read once: not followed");
  }
  if (to_get) {
    next.method = "GET";
    next.body.clear();
    next.body_source = nullptr;
    next.body_length.reset();
    drop_fields(next.headers,
                [](std::string_view name) { return starts_with_ci(name, "content-"); });
  }
  const bool same_origin =
      next.tls == r.tls && next.port == r.port && iequals(next.host, canonical_host(r.host));
  if (!same_origin) {
    drop_fields(next.headers, [](std::string_view name) {
      return iequals(name, "authorization") || iequals(name, "proxy-authorization") ||
             iequals(name, "cookie") || iequals(name, "host");
    });
  }
  if (auto refused = next.problem(); !refused.empty()) {
    return fail(problem,
                "the redirect's Location " + quoted(location) + " cannot be followed: " + refused);
  }
  return next;
}

// ---------------------------------------------------------------------------------------------
// Retry-After

namespace {

std::optional<int> two_digits(std::string_view s) {
  if (s.size() != 2 || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') {
    return std::nullopt;
  }
  return (s[0] - '0') * 10 + (s[1] - '0');
}

// IMF-fixdate, the one date form a sender must produce (RFC 9110 5.6.7):
// "Sun, 06 Nov 1994 08:49:37 GMT". The obsolete forms are not accepted: a server that sends
// them gets its Retry-After ignored, which costs only the backoff's own delay.
// Seconds since the epoch (a time_t, not a system_clock time point: a date centuries ahead,
// which a server may send, does not fit system_clock's nanoseconds).
std::optional<std::time_t> parse_imf_fixdate(std::string_view v) {
  static constexpr std::array<std::string_view, 12> months = {
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (v.size() != 29 || v.substr(3, 2) != ", " || v[7] != ' ' || v[11] != ' ' || v[16] != ' ' ||
      v[19] != ':' || v[22] != ':' || v.substr(25) != " GMT") {
    return std::nullopt;
  }
  const auto day = two_digits(v.substr(5, 2));
  const auto month = std::find(months.begin(), months.end(), v.substr(8, 3));
  const auto century = two_digits(v.substr(12, 2));
  const auto year = two_digits(v.substr(14, 2));
  const auto hour = two_digits(v.substr(17, 2));
  const auto minute = two_digits(v.substr(20, 2));
  const auto second = two_digits(v.substr(23, 2));
  if (!day || month == months.end() || !century || !year || !hour || !minute || !second ||
      *day < 1 || *day > 31 || *hour > 23 || *minute > 59 || *second > 60) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = *century * 100 + *year - 1900;
  tm.tm_mon = static_cast<int>(month - months.begin());
  tm.tm_mday = *day;
  tm.tm_hour = *hour;
  tm.tm_min = *minute;
  tm.tm_sec = *second;
  const std::time_t t = timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) {
    return std::nullopt;
  }
  return t;
}

} // namespace

std::optional<clock::duration> parse_retry_after(std::string_view value,
                                                 std::chrono::system_clock::time_point now) {
  value = detail::trim_ows(value);
  if (!value.empty() &&
      std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    std::uint64_t seconds = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec != std::errc{}) {
      return std::nullopt;
    }
    // Anything past a day is as good as "never" to a retry policy; capping keeps the
    // conversion to nanoseconds from overflowing.
    return std::chrono::seconds{std::min<std::uint64_t>(seconds, 86400)};
  }
  const auto when = parse_imf_fixdate(value);
  if (!when) {
    return std::nullopt;
  }
  // In whole seconds, capped at a day before any conversion to a finer unit can overflow.
  const std::time_t from = std::chrono::system_clock::to_time_t(now);
  if (*when <= from) {
    return clock::duration::zero();
  }
  return std::chrono::seconds{std::min<std::time_t>(*when - from, 86400)};
}

} // namespace tether::http
