#include "tether/http/content_coding.hpp"
#include "tether/http/fields.hpp"
#include "tether/http/proxy.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <span>

#include <asio/write.hpp>

#include <openssl/evp.h>

#include "tether/core/error.hpp"

#include "exchange.hpp"

namespace tether::http::detail {

namespace {

/// Collects one response from the parser's callbacks, skipping interim (1xx) responses; with a
/// stream, the answer's body goes there instead.
class response_reader final : public parser_handler {
public:
  response_reader(response& r, body_stream* stream) : r_{r}, stream_{stream} {}

  void on_head(const message_head& head) override {
    if (head.status >= 100 && head.status < 200) {
      interim_ = true;
      return;
    }
    r_.status = head.status;
    r_.reason = head.reason;
    r_.version_minor = head.version_minor;
    r_.headers.clear();
    r_.headers.reserve(head.headers.size());
    for (const auto& h : head.headers) {
      r_.headers.push_back({std::string{h.name}, std::string{h.value}});
    }
    keep_alive_ = head.keep_alive;
    if (stream_ != nullptr) {
      stream_->streaming = stream_->is_answer(r_);
    }
  }
  void on_body(std::string_view piece) override {
    if (interim_) {
      return;
    }
    if (stream_ == nullptr || !stream_->streaming) {
      r_.body.append(piece);
    } else if (!stream_->stopped) {
      stream_->started = true;
      stream_->stopped = !stream_->sink(piece);
    }
  }
  void on_message_complete() override {
    if (interim_) {
      interim_ = false;
      return;
    }
    complete_ = true;
  }

  [[nodiscard]] bool complete() const noexcept { return complete_; }
  [[nodiscard]] bool keep_alive() const noexcept { return keep_alive_; }

private:
  response& r_;
  body_stream* stream_;
  bool interim_ = false;
  bool complete_ = false;
  bool keep_alive_ = false;
};

/// Writes what `body` produces after the head: the pieces, or chunks and the last chunk. An
/// error when writing fails, or when a source with a length gives more or less than it.
asio::awaitable<std::error_code> write_produced(http_connection& c, const body_producer& body) {
  std::uint64_t sent = 0;
  for (;;) {
    const std::string_view piece = body.next();
    std::array<char, 24> size_line{};
    std::array<asio::const_buffer, 3> buffers{};
    std::size_t count = 0;
    if (body.length) {
      if (sent + piece.size() > *body.length || (piece.empty() && sent != *body.length)) {
        co_return make_error_code(errc::invalid_content_length); // the source broke its word
      }
      if (piece.empty()) {
        co_return std::error_code{};
      }
      buffers[count++] = asio::buffer(piece);
    } else {
      // chunk = chunk-size CRLF chunk-data CRLF; the last chunk is "0" CRLF CRLF (RFC 9112 7.1)
      const int n = std::snprintf(size_line.data(), size_line.size(), "%zx\r\n", piece.size());
      buffers[count++] = asio::buffer(size_line.data(), static_cast<std::size_t>(n));
      if (!piece.empty()) {
        buffers[count++] = asio::buffer(piece);
      }
      buffers[count++] = asio::buffer("\r\n", 2);
    }
    auto [error, written] = co_await asio::async_write(
        c.stream, std::span<const asio::const_buffer>{buffers.data(), count}, use_tuple);
    if (error) {
      co_return net::normalized(tls::classify_failure(c.stream, error));
    }
    sent += piece.size();
    if (piece.empty()) {
      co_return std::error_code{};
    }
  }
}

} // namespace

asio::awaitable<exchange_result> exchange(http_connection& c, std::string_view head,
                                          std::string_view body, bool head_request, response& out,
                                          body_stream* stream, const body_producer* produced) {
  exchange_result result;
  c.reusable = false;
  // A streamed body is the caller's to bound; the connection's limit is put back after.
  c.parser.set_max_body(stream != nullptr ? 0 : c.max_body);
  const std::array<asio::const_buffer, 2> buffers = {asio::buffer(head), asio::buffer(body)};
  auto [write_error, written] = co_await asio::async_write(c.stream, buffers, use_tuple);
  if (!write_error && produced != nullptr) {
    if (const auto produce_error = co_await write_produced(c, *produced)) {
      result.error = produce_error;
      co_return result;
    }
  }
  if (write_error) {
    result.error = net::normalized(tls::classify_failure(c.stream, write_error));
    co_return result;
  }
  if (head_request) {
    c.parser.expect_head_response();
  }
  response_reader reader{out, stream};
  for (;;) {
    auto [read_error, n] = co_await c.stream.async_read_some(asio::buffer(c.buffer), use_tuple);
    if (read_error == asio::error::eof) {
      c.parser.finish(reader);
      if (c.parser.error()) {
        result.error = c.parser.error();
      } else if (!reader.complete()) {
        result.error = asio::error::eof;
      }
      co_return result;
    }
    if (read_error) {
      result.error = net::normalized(tls::classify_failure(c.stream, read_error));
      co_return result;
    }
    result.response_bytes = true;
    const std::size_t used = c.parser.feed({c.buffer.data(), n}, reader);
    if (c.parser.error()) {
      result.error = c.parser.error();
      co_return result;
    }
    if (stream != nullptr && stream->stopped) {
      result.error = make_error_code(std::errc::operation_canceled); // the caller's sink
      co_return result;
    }
    if (reader.complete()) {
      // Bytes past the response were never asked for: the connection is out of step.
      c.reusable = reader.keep_alive() && used == n && c.parser.idle();
      co_return result;
    }
  }
}

request_result classify(const client_result& r) noexcept {
  if (!r.error) {
    const int cls = std::clamp(r.response.status / 100, 1, 5);
    return static_cast<request_result>(cls - 1);
  }
  const auto& ec = r.error;
  if (ec == tether::errc::circuit_open) {
    return request_result::circuit_open;
  }
  if (ec == tether::errc::pool_timeout || ec == tether::errc::pool_closed) {
    return request_result::pool_timeout;
  }
  if (ec == tether::errc::deadline_exceeded) {
    return request_result::deadline_exceeded;
  }
  if (ec == tether::errc::invalid_request) {
    return request_result::invalid_request;
  }
  if (ec == std::errc::operation_canceled) {
    return request_result::cancelled;
  }
  if (ec == tether::errc::response_timeout) {
    return request_result::timeout;
  }
  // A failed handshake, or a peer's TLS alert (its cause is in the TLS failure counters).
  if (tether::is_tls_error(ec)) {
    return request_result::tls_failure;
  }
  if (ec.category() == error_category()) {
    return request_result::protocol_error;
  }
  if (ec == std::errc::connection_refused) {
    return request_result::refused;
  }
  if (ec == std::errc::timed_out) {
    return request_result::timeout;
  }
  if (r.attempts > 0 && (ec == asio::error::eof || ec == std::errc::connection_reset ||
                         ec == std::errc::broken_pipe || ec == asio::error::operation_aborted)) {
    return request_result::reset;
  }
  return request_result::connect_failure;
}

std::string describe(const request& r) {
  return r.method + " " + r.target_url();
}

bool has_field(const request& r, std::string_view name) noexcept {
  return find_field(r.headers, name) != nullptr;
}

void write_head(std::string& out, const request& r, std::string_view user_agent,
                std::string_view accept_encoding, bool proxied,
                std::string_view proxy_authorization) {
  out.reserve(64 + r.target.size() + r.host.size() + r.headers.size() * 32);
  out.append(r.method).append(" ").append(proxied ? r.target_url() : r.target);
  out.append(" HTTP/1.1\r\n");
  if (!proxy_authorization.empty()) {
    out.append("Proxy-Authorization: ").append(proxy_authorization).append("\r\n");
  }
  if (!has_field(r, "host")) {
    out.append("Host: ");
    const bool ipv6 = r.host.find(':') != std::string::npos;
    if (ipv6) {
      out.append("[").append(r.host).append("]");
    } else {
      out.append(r.host);
    }
    if (r.port != (r.tls ? 443 : 80)) {
      out.append(":").append(std::to_string(r.port));
    }
    out.append("\r\n");
  }
  if (!user_agent.empty() && !has_field(r, "user-agent")) {
    out.append("User-Agent: ").append(user_agent).append("\r\n");
  }
  if (!accept_encoding.empty()) {
    out.append("Accept-Encoding: ").append(accept_encoding).append("\r\n");
  }
  for (const auto& f : r.headers) {
    out.append(f.name).append(": ").append(f.value).append("\r\n");
  }
  if (r.body_source) {
    if (r.body_length) {
      out.append("Content-Length: ").append(std::to_string(*r.body_length)).append("\r\n");
    } else {
      out.append("Transfer-Encoding: chunked\r\n");
    }
  } else if (!r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH") {
    out.append("Content-Length: ").append(std::to_string(r.body.size())).append("\r\n");
  }
  out.append("\r\n");
}

namespace {

// "Basic base64(user:password)" (RFC 7617), with OpenSSL's base64.
std::string basic_authorization(const std::string& user, const std::string& password) {
  const std::string pair = user + ":" + password;
  std::string encoded(4 * ((pair.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()),
                                reinterpret_cast<const unsigned char*>(pair.data()),
                                static_cast<int>(pair.size()));
  encoded.resize(static_cast<std::size_t>(n));
  return "Basic " + encoded;
}

} // namespace

std::optional<proxy_route> proxy_for(const request& r, const proxy_settings& settings) {
  const std::string& url = r.tls ? settings.https : settings.http;
  if (url.empty() || bypasses_proxy(settings.no_proxy, r.host, r.port)) {
    return std::nullopt;
  }
  const auto proxy = proxy_endpoint::parse(url);
  if (!proxy) {
    return std::nullopt;
  }
  proxy_route route{proxy->host, proxy->port};
  if (!proxy->user.empty()) {
    route.authorization = basic_authorization(proxy->user, proxy->password);
  }
  return route;
}

std::error_code decode_answer(response& res, std::uint64_t max_size) {
  // Every Content-Encoding field, in order: several are one list (RFC 9110 5.3).
  std::string codings;
  for (const auto& f : res.headers) {
    if (tether::iequals(f.name, "content-encoding")) {
      codings.append(codings.empty() ? "" : ", ").append(f.value);
    }
  }
  if (codings.empty() || res.body.empty() || !decodable(codings)) {
    return {};
  }
  if (auto ec = decode_body(res.body, codings, max_size)) {
    return ec;
  }
  std::erase_if(res.headers, [](const field& f) {
    return tether::iequals(f.name, "content-encoding") || tether::iequals(f.name, "content-length");
  });
  res.decompressed = true;
  return {};
}

} // namespace tether::http::detail
