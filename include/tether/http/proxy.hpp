#pragma once
// Forward proxies for the HTTP client: where a request goes when it goes through one (squid,
// tinyproxy, a corporate proxy), read from the settings or from the environment as curl and Go
// read it.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tether::http {

/// The proxies a client sends through. http:// requests go to `http` in absolute form
/// ("GET http://host/path HTTP/1.1"); https:// requests go through a CONNECT tunnel made at
/// `https`, with TLS end to end to the host (the proxy sees neither the request nor the
/// certificate check). Hosts `no_proxy` matches go direct.
struct proxy_settings {
  /// "http://[user:password@]host[:port]" (a URL without a scheme is taken as http://; the port
  /// is 80 unless given). Empty: http:// requests go direct.
  std::string http;
  /// The same, for https:// requests.
  std::string https;
  /// Comma-separated hosts that go direct, as curl and Go read NO_PROXY: "example.com" (and its
  /// subdomains; a leading dot changes nothing), an IP address, a CIDR block ("10.0.0.0/8"),
  /// any of them with ":port", or "*" for every host.
  std::string no_proxy;

  /// From the environment: http_proxy (HTTP_PROXY too, unless REQUEST_METHOD says the process
  /// is a CGI script, where a request's "Proxy:" header would set it: "httpoxy"), https_proxy
  /// or HTTPS_PROXY, no_proxy or NO_PROXY; lower case first. With a proxy set, localhost and
  /// the loopback addresses are added to no_proxy, as Go's client does: a proxy in the
  /// environment is for the outside world, not for a sidecar on this machine. A proxy the
  /// client cannot use (https://, socks5://) is left out, so that requests go direct rather
  /// than every client made with the defaults throwing.
  [[nodiscard]] static proxy_settings from_environment();
};

/// A proxy URL taken apart.
struct proxy_endpoint {
  std::string host; ///< a name or an address (IPv6 without brackets)
  std::uint16_t port = 80;
  std::string user;     ///< percent-decoded; empty without credentials
  std::string password; ///< percent-decoded

  /// Parses a proxy setting; nullopt (and `*problem` says what is wrong, with any credentials
  /// in it shown as ***) for a scheme other than http (https:// and socks proxies are not
  /// supported), an empty host or a bad port.
  [[nodiscard]] static std::optional<proxy_endpoint> parse(std::string_view text,
                                                           std::string* problem = nullptr);
};

/// True when `no_proxy` (proxy_settings::no_proxy) sends `host`:`port` direct.
[[nodiscard]] bool bypasses_proxy(std::string_view no_proxy, std::string_view host,
                                  std::uint16_t port);

/// The status of a proxy's answer to CONNECT, from its head (up to the blank line):
/// "HTTP/1.1 200 Connection established\r\n...". nullopt when it is not an HTTP/1.x status line.
[[nodiscard]] std::optional<int> connect_reply_status(std::string_view head) noexcept;

} // namespace tether::http
