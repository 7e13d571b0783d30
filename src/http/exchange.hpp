#pragma once

// One HTTP/1.1 exchange on a pooled connection (a request written, its response read), and the
// helpers the client builds its requests with (private to src/http).

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

#include "tether/http/client.hpp"
#include "tether/http/connection.hpp"
#include "tether/http/proxy.hpp"

namespace tether::http::detail {

inline constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

/// A response body streamed to the caller (request::on_body). The response is judged at its
/// head (`is_answer`: the retry rules, a redirect to follow), and only the answer's body goes
/// to the sink.
struct body_stream {
  const std::function<bool(std::string_view)>& sink;
  std::function<bool(const response&)> is_answer;
  bool streaming = false; ///< this response's body goes to the sink
  bool started = false;   ///< a piece reached the sink
  bool stopped = false;   ///< the sink returned false
};

/// What one exchange on a connection came to.
struct exchange_result {
  std::error_code error;
  bool response_bytes = false; ///< any byte of a response arrived
};

/// A request body produced as it is sent (request::body_source): with a length, as is; without,
/// in chunks.
struct body_producer {
  const std::function<std::string_view()>& next;
  std::optional<std::uint64_t> length;
};

/// Writes the request and reads its response on `c`. Not bounded in time by itself: the caller
/// races it against the attempt's deadline.
asio::awaitable<exchange_result> exchange(http_connection& c, std::string_view head,
                                          std::string_view body, bool head_request, response& out,
                                          body_stream* stream, const body_producer* produced);

// Result labels of tether_http_client_requests_total.
enum class request_result : std::uint8_t {
  status_1xx,
  status_2xx,
  status_3xx,
  status_4xx,
  status_5xx,
  refused,
  connect_failure,
  timeout,
  reset,
  protocol_error,
  circuit_open,
  pool_timeout,
  deadline_exceeded,
  tls_failure,
  invalid_request,
  cancelled,
  count_
};

inline constexpr std::array<std::string_view, static_cast<std::size_t>(request_result::count_)>
    request_result_names = {"1xx",
                            "2xx",
                            "3xx",
                            "4xx",
                            "5xx",
                            "refused",
                            "connect_failure",
                            "timeout",
                            "reset",
                            "protocol_error",
                            "circuit_open",
                            "pool_timeout",
                            "deadline_exceeded",
                            "tls_failure",
                            "invalid_request",
                            "cancelled"};

request_result classify(const client_result& r) noexcept;

/// The request as a user names it in a message: "GET https://example.com:8443/items".
std::string describe(const request& r);

bool has_field(const request& r, std::string_view name) noexcept;

// `accept_encoding`: the codings the client decodes itself, sent unless the request has its own.
// `proxied`: to a forward proxy, the target in absolute form and its Proxy-Authorization.
void write_head(std::string& out, const request& r, std::string_view user_agent,
                std::string_view accept_encoding, bool proxied = false,
                std::string_view proxy_authorization = {});

// The proxy a request to r's host goes through, or none (no proxy for its scheme, or no_proxy
// sends it direct). The settings were checked by client_options::validate.
std::optional<proxy_route> proxy_for(const request& r, const proxy_settings& settings);

// Decodes the body of a response the client asked for compressed (gzip, deflate), removing
// the Content-Encoding and Content-Length fields it no longer matches. A body in a coding the
// client does not take (br) is left as it came, its fields with it.
std::error_code decode_answer(response& res, std::uint64_t max_size);

} // namespace tether::http::detail
