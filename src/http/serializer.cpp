#include "tether/http/serializer.hpp"

#include <algorithm>

#include "text.hpp"

#include <cstdio>
#include <ctime>

namespace tether::http {
namespace {

using detail::iequals;
using detail::trim_ows;

// True when a Connection field of `head` lists `name` as a connection option.
bool named_by_connection(std::string_view name, const message_head& head) noexcept {
  for (const auto& h : head.headers) {
    if (!iequals(h.name, "connection")) {
      continue;
    }
    std::string_view rest = h.value;
    while (true) {
      const auto comma = rest.find(',');
      if (iequals(trim_ows(rest.substr(0, comma)), name)) {
        return true;
      }
      if (comma == std::string_view::npos) {
        break;
      }
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

// is_hop_by_hop, told whether the head has a Connection field at all (most requests through a
// proxy do not, and looking for one per field made writing a head quadratic).
bool hop_by_hop(std::string_view name, const message_head& head, bool tunnel,
                bool has_connection) noexcept {
  // By length first: called for every field of every head forwarded, most of them not one of
  // these (RFC 9110 7.6.1, and Proxy-Connection, Keep-Alive from RFC 2068).
  switch (name.size()) {
  case 2:
    if (iequals(name, "te")) {
      return true;
    }
    break;
  case 7:
    if (iequals(name, "trailer")) {
      return true;
    }
    if (iequals(name, "upgrade")) {
      return !tunnel;
    }
    break;
  case 10:
    if (iequals(name, "connection") || iequals(name, "keep-alive")) {
      return true;
    }
    break;
  case 16:
    if (iequals(name, "proxy-connection")) {
      return true;
    }
    break;
  case 18:
    if (iequals(name, "proxy-authenticate")) {
      return true;
    }
    break;
  case 19:
    if (iequals(name, "proxy-authorization")) {
      return true;
    }
    break;
  default:
    break;
  }
  if (!has_connection) {
    return false;
  }
  // Framing fields stay even if a sender lists them in Connection: dropping them would change
  // where the body ends.
  if (iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
      iequals(name, "host")) {
    return false;
  }
  return named_by_connection(name, head);
}

void write_fields(std::string& out, const message_head& head, const serialize_options& options) {
  const bool has_connection = head.find("connection") != nullptr;
  for (const auto& h : head.headers) {
    if (hop_by_hop(h.name, head, options.tunnel, has_connection) ||
        std::any_of(options.drop.begin(), options.drop.end(),
                    [&](std::string_view d) { return detail::iequals(h.name, d); })) {
      continue;
    }
    out.append(h.name).append(": ").append(h.value).append("\r\n");
  }
  if (options.tunnel && head.find("upgrade") != nullptr) {
    out.append("Connection: upgrade\r\n");
  }
  for (const auto& h : options.extra) {
    out.append(h.name).append(": ").append(h.value).append("\r\n");
  }
  out.append("\r\n");
}

} // namespace

bool is_hop_by_hop(std::string_view name, const message_head& head, bool tunnel) noexcept {
  return hop_by_hop(name, head, tunnel, head.find("connection") != nullptr);
}

void write_request_head(std::string& out, const message_head& head,
                        const serialize_options& options) {
  out.append(head.method).append(" ").append(head.target);
  out.append(head.version_minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  write_fields(out, head, options);
}

void write_response_head(std::string& out, const message_head& head,
                         const serialize_options& options) {
  out.append(head.version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  out.append(std::to_string(head.status)).append(" ").append(head.reason).append("\r\n");
  write_fields(out, head, options);
}

std::string http_date(std::chrono::system_clock::time_point t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[32];
  // %a and %b are the C locale's English names, which IMF-fixdate requires; the process never
  // sets another locale.
  const auto n = std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &utc);
  return {text, n};
}

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 204:
    return "No Content";
  case 301:
    return "Moved Permanently";
  case 302:
    return "Found";
  case 304:
    return "Not Modified";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 409:
    return "Conflict";
  case 411:
    return "Length Required";
  case 413:
    return "Content Too Large";
  case 414:
    return "URI Too Long";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  case 505:
    return "HTTP Version Not Supported";
  case 508:
    return "Loop Detected";
  default:
    return "Unknown";
  }
}

void write_own_response(std::string& out, const own_response& r) {
  out.append("HTTP/1.1 ").append(std::to_string(r.status)).append(" ");
  out.append(reason_phrase(r.status)).append("\r\nDate: ");
  out.append(http_date(std::chrono::system_clock::now())).append("\r\n");
  if (!r.content_type.empty()) {
    out.append("Content-Type: ").append(r.content_type).append("\r\n");
  }
  for (const auto& f : r.fields) {
    out.append(f.name).append(": ").append(f.value).append("\r\n");
  }
  out.append("Content-Length: ").append(std::to_string(r.body.size())).append("\r\n");
  switch (r.connection) {
  case connection_field::none:
    break;
  case connection_field::close:
    out.append("Connection: close\r\n");
    break;
  case connection_field::keep_alive:
    out.append("Connection: keep-alive\r\n");
    break;
  }
  out.append("\r\n");
  if (!r.head_request) {
    out.append(r.body);
  }
}

void write_chunk(std::string& out, std::string_view data) {
  if (data.empty()) {
    return;
  }
  char size[20];
  const int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  out.append(size, static_cast<std::size_t>(n)).append(data).append("\r\n");
}

void write_last_chunk(std::string& out) {
  out.append("0\r\n\r\n");
}

} // namespace tether::http
