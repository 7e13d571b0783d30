#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>

#include "tether/core/clock.hpp"
#include "tether/http/message.hpp"
#include "tether/http/parser.hpp"
#include "tether/http/proxy.hpp"
#include "tether/metrics/registry.hpp"
#include "tether/net/tcp_connector.hpp"
#include "tether/pool/pool_options.hpp"
#include "tether/resilience/circuit_breaker.hpp"
#include "tether/resilience/retry_budget.hpp"
#include "tether/resilience/retry_policy.hpp"
#include "tether/tls/options.hpp"

namespace tether::http {

using namespace std::chrono_literals;

/// How a request ended: a response (error empty; any status, 5xx included, once retries are
/// over), or an error that says why there is none, and a message that says where.
struct client_result {
  /// Empty when `response` holds the answer. Otherwise: tether::errc::circuit_open,
  /// pool_timeout, deadline_exceeded (the overall timeout), response_timeout (the per-try one),
  /// invalid_request (nothing sent; `message` says what is wrong), too_many_redirects,
  /// bad_redirect; std::errc::operation_canceled (the caller cancelled); connection_refused,
  /// timed_out (connecting), connection_reset; asio::error::eof (closed before answering); a
  /// tether::http::errc for a malformed response; a tether::errc::tls_* for a TLS handshake
  /// that failed (certificate errors are never retried).
  std::error_code error{};
  http::response response{};
  std::uint32_t attempts = 0; ///< attempts sent or tried, retries included
  /// Why no further attempt was made (succeeded when the last attempt got a response < 500).
  resilience::give_up_reason reason = resilience::give_up_reason::succeeded;
  /// With an error, the request, where it went and what happened, for a log line or an
  /// exception: "GET http://127.0.0.1:8080/items: cannot connect: Connection refused (3
  /// attempts)". Empty with a response.
  std::string message{};
  /// Redirects followed on the way to this result (client_options::max_redirects).
  std::uint32_t redirects = 0;
  /// With redirects followed, the URL the last request went to (where `response` came from).
  std::string url{};
};

/// Settings of an http::client. Each host gets its own pool, breaker and budget built from them.
struct client_options {
  /// Per host. Unlike a database pool's, an HTTP client's pool grows on demand (min_idle 0) and
  /// drops idle connections after 50 s, before the common server keep-alive timeouts (nginx's
  /// 75 s) close them under it.
  pool::pool_options pool = default_pool();
  net::tcp_options tcp{};
  /// For https:// requests: verification against the system's trust store by default, ALPN
  /// http/1.1, TLS 1.2 at least, sessions resumed per host.
  tls::client_options tls{};
  /// Retries: Envoy's defaults (2 attempts, only connections that could not be made, 15 s overall,
  /// 25-250 ms full-jitter backoff). Only idempotent methods, or requests with an Idempotency-Key,
  /// are sent twice.
  resilience::retry_policy retry{};
  /// Finagle's retry budget per host (20 % of requests, at least 10 retries/s); nullopt: none.
  std::optional<resilience::windowed_retry_budget_options> budget =
      resilience::windowed_retry_budget_options{};
  /// A breaker per host; nullopt: none. The default opens at a 50 % failure rate over the last
  /// 20 calls (at least 10), waits 5 s, then lets 3 trial calls through.
  std::optional<resilience::circuit_breaker_options> breaker = default_breaker();
  parser_limits limits{};
  std::uint64_t max_response_body = 64ULL * 1024 * 1024; ///< larger responses fail (body_too_large)
  /// Redirects (301, 302, 303, 307, 308) followed per request, as http::redirected says; one
  /// more is errc::too_many_redirects. 0 (the default, as libcurl's): a 3xx is the answer.
  /// request::max_redirects sets it for one request.
  std::uint32_t max_redirects = 0;
  /// Asks for gzip and deflate (Accept-Encoding) and hands over the body decoded, as browsers
  /// and Go's client do; up to max_response_body decoded. A request that sets its own
  /// Accept-Encoding gets the body as it came.
  bool decompress = true;
  /// A host given by name is looked up when first used and again at this interval, off the
  /// request path; new connections use the last answer (a failed lookup keeps it), so a busy
  /// host costs one lookup per interval rather than one per connection. 0: every new connection
  /// looks the name up itself.
  clock::duration resolve_interval = 30s;
  /// Forward proxies, from the environment by default as curl and Go take them (http_proxy,
  /// https_proxy, no_proxy; see proxy_settings::from_environment, which also sends localhost and
  /// loopback addresses direct). Assign `{}` to go direct whatever the environment says.
  proxy_settings proxy = proxy_settings::from_environment();
  std::string user_agent = "tether";
  /// The `client` label of every metric series.
  std::string name = "default";

  [[nodiscard]] static pool::pool_options default_pool() {
    pool::pool_options o;
    o.max_size = 32;
    o.min_idle = 0;
    o.idle_timeout = 50s;
    o.acquire_timeout = 5s;
    return o;
  }
  [[nodiscard]] static resilience::circuit_breaker_options default_breaker() {
    resilience::circuit_breaker_options o;
    o.window_size = 20;
    o.minimum_calls = 10;
    o.wait_in_open = 5s;
    o.permitted_calls_in_half_open = 3;
    return o;
  }

  /// Throws std::invalid_argument naming the field when a value is out of range.
  void validate() const;
};

/// An HTTP/1.1 client: connections kept alive in a tether pool per host, a per-try timeout and an
/// overall one, retries by the retry policy (idempotent requests only) with jittered backoff, a
/// retry budget and a circuit breaker per host; every part of it in metrics when given a registry.
///
/// A client lives on one io_context's executor (a worker's); calls from elsewhere hop onto it.
/// Thread-per-core services make one client per worker.
///
///   auto client = http::client::create(io.get_executor());
///   auto r = co_await client->async_request(http::request::to("GET", "http://127.0.0.1:8080/"));
///   if (r.error) { log(r.message); } else { use(r.response.status, r.response.body); }
class client : public std::enable_shared_from_this<client> {
  struct private_tag {};

public:
  using executor_type = asio::io_context::executor_type;

  /// Makes a client. With a registry, its series are registered there (labels client, host).
  static std::shared_ptr<client> create(executor_type executor, client_options options = {},
                                        metrics::registry* registry = nullptr,
                                        const clock& clock = monotonic_clock::instance());

  /// The same from an any_io_executor, such as `co_await asio::this_coro::executor` in a
  /// coroutine spawned on an io_context; throws std::invalid_argument for any other executor.
  static std::shared_ptr<client> create(const asio::any_io_executor& executor,
                                        client_options options = {},
                                        metrics::registry* registry = nullptr,
                                        const clock& clock = monotonic_clock::instance());

  client(private_tag, executor_type executor, client_options options, metrics::registry* registry,
         const clock& clock);
  client(const client&) = delete;
  client& operator=(const client&) = delete;
  ~client();

  /// Sends `r` and reads its response, retrying as the policy allows.
  asio::awaitable<client_result> async_request(request r);

  /// Sends from a thread that is not the client's (code without coroutines), while another
  /// thread runs the client's io_context: with none running it, this waits forever
  /// (blocking_client runs one of its own). Called on the client's own thread it returns
  /// errc::blocking_on_worker at once rather than deadlock.
  client_result send(request r);

  /// Closes every host's pool (letting leases come home); requests after it fail with
  /// errc::pool_closed. Until it is called, the pools' housekeepers keep the io_context busy:
  /// io.run() does not return while a client is open.
  asio::awaitable<void> async_close();

  /// Counts for one host, readable on the client's executor: nullopt if it was never used.
  struct host_stats {
    pool::pool_stats pool{};
    resilience::breaker_state breaker = resilience::breaker_state::closed;
    std::uint64_t connections_opened = 0;
    /// Lookups of the host's name: on the resolve_interval schedule, and by connections made
    /// while no answer was in (or every connection's, with resolve_interval 0).
    std::uint64_t dns_lookups = 0;
  };
  [[nodiscard]] std::optional<host_stats> stats(std::string_view host, std::uint16_t port,
                                                bool tls = false) const;
  /// TLS handshakes of every https host, by how they ended.
  struct tls_stats {
    std::uint64_t full = 0;    ///< completed with a full handshake
    std::uint64_t resumed = 0; ///< completed by resuming a session
    std::uint64_t failed = 0;  ///< failed, whatever the cause
  };
  [[nodiscard]] tls_stats handshakes() const noexcept;

  [[nodiscard]] const client_options& options() const noexcept { return options_; }
  [[nodiscard]] const executor_type& get_executor() const noexcept { return executor_; }

  struct host;
  struct address_refresh;

private:
  static asio::awaitable<client_result> request_on(std::shared_ptr<client> self, request r);
  static asio::awaitable<void> close_on(std::shared_ptr<client> self);
  // On the client's executor: send_once, or follow_redirects when the request may follow any.
  asio::awaitable<client_result> request_here(request r);
  // One request, its retries included; a 3xx is its answer (or, for a streamed body, is
  // followed when `follows_redirects`: its body is not the caller's).
  asio::awaitable<client_result> send_once(request r, bool follows_redirects = false);
  // Requests, one per redirect, up to `limit` redirects, within the first one's overall timeout.
  asio::awaitable<client_result> follow_redirects(request r, std::uint32_t limit);
  host& host_for(const request& r);

  executor_type executor_;
  client_options options_;
  metrics::registry* registry_;
  const clock& clock_;
  struct state;
  std::unique_ptr<state> s_;
};

} // namespace tether::http
