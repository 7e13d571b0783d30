#include "tether/http/client.hpp"
#include "tether/http/connection.hpp"
#include "tether/http/content_coding.hpp"
#include "tether/http/proxy.hpp"

#include <algorithm>
#include <array>
#include <functional>
#include <future>
#include <stdexcept>
#include <unordered_map>
#include <variant>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include "tether/core/detached.hpp"
#include "tether/core/error.hpp"
#include "tether/core/executor.hpp"
#include "tether/core/random.hpp"
#include "tether/metrics/histogram.hpp"
#include "tether/metrics/resilience_metrics.hpp"
#include "tether/pool/connection_pool.hpp"
#include "tether/pool/pool_metrics.hpp"
#include "tether/tls/context.hpp"
#include "tether/tls/tls_metrics.hpp"
#include "tether/upstream/attempt_loop.hpp"
#include "tether/upstream/attempts.hpp"

#include "exchange.hpp"

namespace tether::http {

using detail::body_producer;
using detail::body_stream;
using detail::classify;
using detail::decode_answer;
using detail::describe;
using detail::exchange_result;
using detail::has_field;
using detail::proxy_for;
using detail::request_result;
using detail::request_result_names;
using detail::use_tuple;
using detail::write_head;

namespace {

using host_pool = pool::connection_pool<http_connector>;

} // namespace

void client_options::validate() const {
  pool.validate();
  tcp.validate();
  tls.validate();
  retry.validate();
  if (budget) {
    budget->validate();
  }
  if (breaker) {
    breaker->validate();
  }
  if (max_response_body == 0) {
    throw std::invalid_argument{"client_options.max_response_body must be above 0"};
  }
  if (user_agent.find_first_of("\r\n") != std::string::npos) {
    throw std::invalid_argument{"client_options.user_agent must not hold CR or LF"};
  }
  for (const auto& [field, value] : {std::pair{"http", &proxy.http}, {"https", &proxy.https}}) {
    std::string problem;
    if (!value->empty() && !proxy_endpoint::parse(*value, &problem)) {
      throw std::invalid_argument{std::string{"client_options.proxy."} + field + ": " + problem};
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Per-host state

/// A host name looked up now and every resolve_interval; its connections use the last answer,
/// and a failed lookup keeps it. Stopped by async_close.
struct client::address_refresh {
  explicit address_refresh(const executor_type& executor) : timer{executor}, resolver{executor} {}

  std::shared_ptr<net::address_cache> cache;
  asio::steady_timer timer;
  asio::ip::tcp::resolver resolver;
  bool stopped = false;
  std::uint64_t lookups = 0;
  prometheus::Counter* ok = nullptr; // null without a registry
  prometheus::Counter* failed = nullptr;

  void stop() {
    stopped = true;
    timer.cancel();
    resolver.cancel();
  }
};

namespace {

asio::awaitable<void> refresh_addresses(std::shared_ptr<client::address_refresh> r,
                                        std::string name, std::uint16_t port,
                                        clock::duration interval) {
  const std::string service = std::to_string(port);
  while (!r->stopped) {
    ++r->lookups;
    auto [ec, results] = co_await r->resolver.async_resolve(name, service, use_tuple);
    if (r->stopped) {
      co_return;
    }
    if (!ec && !results.empty()) {
      std::vector<asio::ip::tcp::endpoint> addresses;
      for (const auto& entry : results) {
        addresses.push_back(entry.endpoint());
      }
      r->cache->set(std::move(addresses));
      if (r->ok != nullptr) {
        r->ok->Increment();
      }
    } else if (r->failed != nullptr) {
      r->failed->Increment();
    }
    r->timer.expires_after(std::chrono::duration_cast<asio::steady_timer::duration>(interval));
    co_await r->timer.async_wait(use_tuple);
  }
}

} // namespace

/// One upstream host as the client keeps it: a cluster of that one host in the upstream layer
/// (its pool, breaker and budget) and the client's own series.
struct client::host {
  std::unique_ptr<upstream::cluster<http_connector>> upstream;
  /// For a host given by name: its lookups on a schedule (client_options::resolve_interval).
  std::shared_ptr<address_refresh> refresh;
  /// Through a forward proxy, plain HTTP: requests go in absolute form, with this
  /// Proxy-Authorization (when not empty).
  bool absolute_form = false;
  std::string proxy_authorization;

  // Metrics (null without a registry).
  std::array<prometheus::Counter*, static_cast<std::size_t>(request_result::count_)> results{};
  prometheus::Counter* attempts = nullptr;
  metrics::histogram* duration = nullptr;
};

namespace {

/// What the client exchanges on a connection for upstream::attempt_loop: a whole request, then
/// a whole response into `out`, judged at its end.
struct client_exchange {
  std::string_view head;
  std::string_view body;
  bool head_request = false;
  response& out;
  client::executor_type executor;
  // With request::on_body: where the answer's body goes, and whether a 3xx with a Location is
  // followed (then it is not the answer).
  const std::function<bool(std::string_view)>* sink = nullptr;
  const body_producer* produced = nullptr; ///< with request::body_source
  bool follows_redirects = false;
  bool sink_stopped = false; ///< the sink ended the request

  // The head's outcome for the retry rules.
  static resilience::attempt_outcome outcome_of(const response& res) {
    std::optional<clock::duration> retry_after;
    if (const auto* v = res.find("retry-after")) {
      retry_after = parse_retry_after(*v, std::chrono::system_clock::now());
    }
    return resilience::attempt_outcome::from_status(res.status, retry_after);
  }

  asio::awaitable<upstream::exchange_end> exchange(upstream::attempt<http_connector>& a) {
    upstream::exchange_end r;
    out = {};
    // Cancelled while the connection was on its way (handed over, not yet resumed): nothing
    // is sent. Asio does not deliver a cancellation again to the operations that follow it.
    const auto before = co_await asio::this_coro::cancellation_state;
    if (before.cancelled() != asio::cancellation_type::none) {
      r.how = upstream::exchange_end::kind::stopped;
      co_return r;
    }
    // Streaming, the response is judged at its head, so that only the answer's body reaches
    // the caller; otherwise once it is whole.
    std::unique_ptr<body_stream> stream;
    std::optional<upstream::attempts::decision> decided;
    bool judged = false;
    if (sink != nullptr) {
      stream = std::make_unique<body_stream>(body_stream{*sink, {}});
      stream->is_answer = [&](const response& res) {
        judged = true;
        decided = a.at_response(outcome_of(res));
        const bool redirect =
            follows_redirects && is_redirect(res.status) && res.find("location") != nullptr;
        return !(decided && decided->retry) && !redirect;
      };
    }
    std::optional<clock::duration> limit;
    if (a.deadline() != clock::time_point::max()) {
      limit = std::max(a.deadline() - a.start(), clock::duration::zero());
    }
    auto& lease = a.lease();
    // The exchange races the attempt's deadline, here rather than in a coroutine of its own: a
    // frame less per request. A timeout ends it (and the connection) with response_timeout.
    exchange_result exchanged;
    if (!limit) {
      exchanged =
          co_await detail::exchange(*lease, head, body, head_request, out, stream.get(), produced);
    } else {
      using namespace asio::experimental::awaitable_operators;
      asio::steady_timer timer{executor,
                               std::chrono::duration_cast<asio::steady_timer::duration>(*limit)};
      auto which = co_await (
          detail::exchange(*lease, head, body, head_request, out, stream.get(), produced) ||
          timer.async_wait(use_tuple));
      exchanged = which.index() == 0
                      ? std::get<0>(which)
                      : exchange_result{make_error_code(tether::errc::response_timeout), false};
    }
    // Cancelled by the caller (a `||` it lost, a cancellation slot it emitted): whatever the
    // exchange ended with, the request stops here. The host did nothing wrong: nothing is held
    // against it, nothing is retried, and the connection, cut mid-exchange, is not reused.
    const auto cancel = co_await asio::this_coro::cancellation_state;
    sink_stopped = stream && stream->stopped;
    if (cancel.cancelled() != asio::cancellation_type::none || sink_stopped) {
      lease.mark_broken();
      out = {};
      r.how = upstream::exchange_end::kind::stopped;
      co_return r;
    }
    if (!exchanged.error) {
      if (!judged) {
        decided = a.at_response(outcome_of(out));
      }
      if (const auto& decision = decided; decision && decision->retry) {
        r.how = upstream::exchange_end::kind::retry;
        r.delay = decision->delay;
        co_return r;
      }
      r.how = upstream::exchange_end::kind::answered;
      co_return r;
    }
    lease.mark_broken();
    out = {};
    r.error = exchanged.error;
    r.failure = exchanged.error.message();
    r.outcome.result = exchanged.error == tether::errc::response_timeout
                           ? resilience::attempt_result::timeout
                           : resilience::attempt_result::reset;
    r.response_bytes = exchanged.response_bytes;
    // A malformed response: the server is broken in a way a retry will not mend.
    r.malformed = exchanged.error.category() == error_category();
    // A TLS 1.3 server refuses a client certificate at the first read: no retry mends that.
    // Nor is a request retried once part of its answer went to the caller's sink.
    r.same_on_retry = is_certificate_error(exchanged.error) || (stream && stream->started);
    co_return r;
  }

  // False when the request was cancelled, before or during the wait.
  asio::awaitable<bool> back_off(clock::duration delay) {
    const auto before = co_await asio::this_coro::cancellation_state;
    if (before.cancelled() != asio::cancellation_type::none) {
      co_return false;
    }
    if (delay > clock::duration::zero()) {
      asio::steady_timer timer{executor,
                               std::chrono::duration_cast<asio::steady_timer::duration>(delay)};
      auto [ec] = co_await timer.async_wait(use_tuple);
      if (ec) {
        co_return false;
      }
    }
    co_return true;
  }

  void on_retry(const upstream::host<http_connector>& /*h*/, const upstream::exchange_end& /*r*/) {}
  void on_replay(const upstream::host<http_connector>& /*h*/) {}
};

} // namespace

struct client::state {
  std::unordered_map<std::string, std::unique_ptr<host>> hosts;
  default_random random{default_random::entropy_seed()};
  bool closed = false;
  std::shared_ptr<tls::client_context> tls; ///< for https hosts, built with the client
  tls::handshake_counters handshakes;
  std::vector<metrics::callback_registration> tls_series;
};

namespace {

// Hosts are kept by scheme, name and port: an https and an http host on one port never share.
std::string host_key(std::string_view name, std::uint16_t port, bool tls) {
  std::string key{tls ? "https://" : ""};
  key.append(name).append(":").append(std::to_string(port));
  return key;
}

} // namespace

std::shared_ptr<client> client::create(executor_type executor, client_options options,
                                       metrics::registry* registry, const clock& clock) {
  options.validate();
  return std::make_shared<client>(private_tag{}, std::move(executor), std::move(options), registry,
                                  clock);
}

std::shared_ptr<client> client::create(const asio::any_io_executor& executor,
                                       client_options options, metrics::registry* registry,
                                       const clock& clock) {
  return create(io_executor_of(executor, "http::client::create"), std::move(options), registry,
                clock);
}

client::client(private_tag, executor_type executor, client_options options,
               metrics::registry* registry, const clock& clock)
    : executor_{std::move(executor)}, options_{std::move(options)}, registry_{registry},
      clock_{clock}, s_{std::make_unique<state>()} {
  s_->tls = std::make_shared<tls::client_context>(options_.tls);
  if (registry_ != nullptr) {
    s_->tls_series = tls::watch_handshakes(*registry_, "tether_http_client",
                                           {{"client", options_.name}}, s_->handshakes);
  }
}

client::~client() = default;

client::host& client::host_for(const request& r) {
  std::string key = host_key(r.host, r.port, r.tls);
  auto found = s_->hosts.find(key);
  if (found != s_->hosts.end()) {
    return *found->second;
  }
  auto h = std::make_unique<host>();
  upstream::cluster_options cluster;
  cluster.name = options_.name;
  cluster.budget = options_.budget;
  cluster.breaker = options_.breaker;
  h->upstream = std::make_unique<upstream::cluster<http_connector>>(std::move(cluster), clock_);
  auto& target = h->upstream->add_host(r.host, r.port);
  auto limits = options_.limits;
  limits.max_body = options_.max_response_body;
  std::optional<tls::client_identity> identity;
  if (r.tls) {
    // Not owned: the client's state outlives its pools' connections.
    identity.emplace(
        s_->tls, r.host,
        std::shared_ptr<tls::handshake_counters>{std::shared_ptr<void>{}, &s_->handshakes});
  }
  std::optional<proxy_route> route = proxy_for(r, options_.proxy);
  if (route && !r.tls) {
    h->absolute_form = true;
    h->proxy_authorization = route->authorization;
  }
  const bool direct = !route;
  http_connector connector{r.host,          r.port, options_.tcp, limits, std::move(identity),
                           std::move(route)};
  if (direct && target.addresses && options_.resolve_interval > clock::duration::zero()) {
    h->refresh = std::make_shared<address_refresh>(executor_);
    h->refresh->cache = target.addresses;
    connector.use_addresses(target.addresses);
  }
  // The pool reads its clock at every acquire and release: the coarse clock, unless the user
  // gave one of their own (a manual clock in tests), which then times the pool too.
  const clock& pool_clock = &clock_ == &monotonic_clock::instance()
                                ? static_cast<const clock&>(coarse_monotonic_clock::instance())
                                : clock_;
  std::shared_ptr<host_pool> pool;
  if (registry_ == nullptr) {
    pool = host_pool::create(executor_, std::move(connector), options_.pool, pool_clock);
  } else {
    const metrics::labels labels{{"client", options_.name}, {"host", key}};
    auto& results = registry_->counter("tether_http_client_requests_total",
                                       "Requests by how they ended: response class or error");
    for (std::size_t i = 0; i < h->results.size(); ++i) {
      h->results[i] =
          &results.Add(metrics::with_label(labels, "result", std::string{request_result_names[i]}));
    }
    auto& series = h->upstream->series;
    auto& retries = registry_->counter("tether_http_client_retries_total",
                                       "Retries by the outcome of the attempt retried");
    for (std::size_t i = 0; i < series.retries.size(); ++i) {
      series.retries[i] =
          &retries.Add(metrics::with_label(labels, "reason", upstream::retry_reason_names[i]));
    }
    // A stale pooled connection (closed by the server while idle, found on reuse) is counted
    // with the retries, under its own reason.
    series.stale_resends = &retries.Add(metrics::with_label(labels, "reason", "stale_connection"));
    h->attempts = &registry_
                       ->counter("tether_http_client_attempts_total",
                                 "Attempts sent or tried, first tries and retries")
                       .Add(labels);
    series.budget_exhausted = &registry_
                                   ->counter("tether_http_client_retry_budget_exhausted_total",
                                             "Retries the retry budget refused")
                                   .Add(labels);
    h->duration = &registry_->histogram_series("tether_http_client_request_duration_seconds",
                                               "Time from a request to its final outcome", labels);
    if (h->refresh) {
      auto& lookups = registry_->counter("tether_http_client_dns_lookups_total",
                                         "Scheduled lookups of a host given by name, by result");
      h->refresh->ok = &lookups.Add(metrics::with_label(labels, "result", "ok"));
      h->refresh->failed = &lookups.Add(metrics::with_label(labels, "result", "failed"));
    }
    if (target.breaker) {
      series.gauges.watch(*registry_, *target.breaker, labels);
    }
    if (h->upstream->budget) {
      series.gauges.watch(*registry_, *h->upstream->budget, labels);
    }
    // The pool's gauges read it at scrape time. A pool can outlive this entry (inside an
    // io_context that still holds its housekeeper), so the reader holds it weakly.
    auto weak = std::make_shared<std::weak_ptr<host_pool>>();
    auto observer = std::make_shared<pool::pool_metrics>(*registry_, labels, [weak] {
      auto p = weak->lock();
      return p ? p->stats() : pool::pool_stats{};
    });
    pool = host_pool::create(executor_, std::move(connector), options_.pool, pool_clock,
                             std::move(observer));
    *weak = pool;
  }
  pool->start();
  target.pools.push_back(std::move(pool));
  if (h->refresh) {
    asio::co_spawn(executor_,
                   refresh_addresses(h->refresh, r.host, r.port, options_.resolve_interval),
                   report_exceptions{"the HTTP client's scheduled lookups of a host"});
  }
  return *s_->hosts.emplace(std::move(key), std::move(h)).first->second;
}

asio::awaitable<client_result> client::async_request(request r) {
  if (!executor_.running_in_this_thread()) {
    // The caller's cancellation is emitted on the caller's thread: it reaches the request on
    // the client's own, where its operations live, through a signal posted there.
    auto signal = std::make_shared<asio::cancellation_signal>();
    auto cancel_state = co_await asio::this_coro::cancellation_state;
    auto caller = cancel_state.slot();
    if (caller.is_connected()) {
      caller.assign([signal, executor = executor_](asio::cancellation_type type) {
        asio::post(executor, [signal, type] { signal->emit(type); });
      });
    }
    auto spawned =
        asio::co_spawn(executor_, request_on(shared_from_this(), std::move(r)),
                       asio::bind_cancellation_slot(signal->slot(), asio::use_awaitable));
    auto out = co_await std::move(spawned);
    if (caller.is_connected()) {
      caller.clear();
    }
    co_return out;
  }
  co_return co_await request_here(std::move(r));
}

asio::awaitable<client_result> client::request_on(std::shared_ptr<client> self, request r) {
  co_return co_await self->request_here(std::move(r));
}

client_result client::send(request r) {
  if (executor_.running_in_this_thread()) {
    return {make_error_code(tether::errc::blocking_on_worker),
            {},
            0,
            resilience::give_up_reason::not_retriable,
            describe(r) + ": send() was called on the client's own thread, which it would "
                          "wait for; co_await async_request() there instead"};
  }
  std::promise<client_result> promise;
  auto done = promise.get_future();
  asio::co_spawn(executor_, request_on(shared_from_this(), std::move(r)),
                 [&promise](std::exception_ptr e, client_result result) {
                   if (e) {
                     promise.set_exception(e);
                   } else {
                     promise.set_value(std::move(result));
                   }
                 });
  return done.get();
}

asio::awaitable<client_result> client::request_here(request r) {
  // Not a coroutine: a request that follows no redirect costs no frame for it.
  const auto limit = r.max_redirects.value_or(options_.max_redirects);
  if (limit == 0) {
    return send_once(std::move(r));
  }
  return follow_redirects(std::move(r), limit);
}

asio::awaitable<client_result> client::follow_redirects(request r, std::uint32_t limit) {
  // The overall timeout is the whole chain's: each request gets what is left of it.
  const auto started = clock_.now();
  const auto overall = r.timeout.value_or(options_.retry.overall_timeout);
  for (std::uint32_t hops = 0;; ++hops) {
    if (overall > clock::duration::zero()) {
      r.timeout = std::max(overall - (clock_.now() - started), clock::duration{1});
    }
    client_result out = co_await send_once(r, true);
    out.redirects = hops;
    if (hops > 0) {
      out.url = r.target_url();
    }
    const auto* location = out.response.find("location");
    if (out.error || !is_redirect(out.response.status) || location == nullptr) {
      co_return out; // an answer, an error, or a 3xx with nowhere to go (its body says why)
    }
    const auto status = out.response.status;
    const auto failed = [&](tether::errc code, std::string why) {
      out.error = make_error_code(code);
      out.message = describe(r) + ": " + why;
      out.response = {};
      out.reason = resilience::give_up_reason::not_retriable;
      return std::move(out);
    };
    if (hops == limit) {
      co_return failed(tether::errc::too_many_redirects,
                       "a " + std::to_string(status) + " to " + *location + " after " +
                           std::to_string(limit) + " redirect" + (limit == 1 ? "" : "s") +
                           ", the limit (max_redirects)");
    }
    std::string problem;
    auto next = redirected(r, status, *location, &problem);
    if (!next) {
      co_return failed(tether::errc::bad_redirect, problem);
    }
    r = std::move(*next);
    if (overall > clock::duration::zero() && clock_.now() - started >= overall) {
      co_return failed(tether::errc::deadline_exceeded,
                       "the overall timeout passed while following redirects");
    }
  }
}

asio::awaitable<client_result> client::send_once(request r, bool follows_redirects) {
  client_result out;
  if (s_->closed) {
    out.error = make_error_code(tether::errc::pool_closed);
    out.reason = resilience::give_up_reason::not_retriable;
    co_return out;
  }
  if (auto problem = r.problem(); !problem.empty()) {
    out.error = make_error_code(tether::errc::invalid_request);
    out.reason = resilience::give_up_reason::not_retriable;
    out.message = describe(r) + ": " + problem;
    co_return out;
  }
  host& h = host_for(r);
  std::string head;
  // The client decodes what it asked for; a request with its own Accept-Encoding gets the body
  // as it came.
  // Not for a Range request either (as Go's client): a part of a compressed body cannot be
  // decoded on its own.
  const bool decompress = options_.decompress && !has_field(r, "accept-encoding") &&
                          !has_field(r, "range") && !r.on_body;
  write_head(head, r, options_.user_agent, decompress ? accepted_codings : std::string_view{},
             h.absolute_form, h.proxy_authorization);

  const resilience::request_traits traits{r.method, has_field(r, "idempotency-key"),
                                          !r.body_source};
  const auto started = clock_.now();
  std::optional<resilience::retry_policy> own_limits;
  if (r.timeout || r.per_try_timeout) {
    own_limits = options_.retry;
    own_limits->overall_timeout = r.timeout.value_or(own_limits->overall_timeout);
    own_limits->per_try_timeout = r.per_try_timeout.value_or(own_limits->per_try_timeout);
  }
  upstream::attempts tries{
      {own_limits ? *own_limits : options_.retry, traits, started, h.upstream->budget.get()}};
  client_exchange ex{head, r.body, r.method == "HEAD", out.response, executor_};
  if (r.on_body) {
    ex.sink = &r.on_body;
    ex.follows_redirects = follows_redirects;
  }
  std::optional<body_producer> produced;
  if (r.body_source) {
    produced.emplace(body_producer{r.body_source, r.body_length});
    ex.produced = &*produced;
  }
  // A cancelled request ends with operation_canceled, not with an exception from the next wait
  // (Asio's default once a coroutine is cancelled); the caller's setting is put back after.
  const bool threw_if_cancelled = co_await asio::this_coro::throw_if_cancelled();
  co_await asio::this_coro::throw_if_cancelled(false);
  const auto end = co_await upstream::attempt_loop(
      *h.upstream, tries, ex, {0, clock_, s_->random, options_.pool.acquire_timeout, started});
  co_await asio::this_coro::throw_if_cancelled(threw_if_cancelled);
  out.attempts = end.passes;
  out.reason = end.reason;
  if (end.how == upstream::loop_end::kind::stopped) {
    out.response = {};
    out.error = make_error_code(std::errc::operation_canceled);
    out.reason = resilience::give_up_reason::not_retriable;
  } else if (end.how != upstream::loop_end::kind::answered) {
    out.response = {};
    switch (end.cause) {
    case upstream::loop_end::why::circuit_open:
      // Failing fast is the point of an open breaker: no retry, no wait.
      out.error = make_error_code(tether::errc::circuit_open);
      break;
    case upstream::loop_end::why::pool_busy:
    case upstream::loop_end::why::overflow:
      out.error = end.error == tether::errc::pool_timeout && clock_.now() >= tries.deadline()
                      ? make_error_code(tether::errc::deadline_exceeded)
                      : end.error;
      break;
    case upstream::loop_end::why::failed:
    case upstream::loop_end::why::none:
      out.error = end.error;
      // An attempt cut short by the overall deadline, not by its own per-try timeout.
      if (end.error == tether::errc::response_timeout && clock_.now() >= tries.deadline()) {
        out.error = make_error_code(tether::errc::deadline_exceeded);
      }
      break;
    }
  }
  if (!out.error && decompress) {
    if (const auto ec = decode_answer(out.response, options_.max_response_body)) {
      out.error = ec;
      out.response = {};
      out.reason = resilience::give_up_reason::not_retriable;
    }
  }
  if (out.error == std::errc::operation_canceled) {
    out.message =
        describe(r) +
        (ex.sink_stopped ? ": the body's reader (request::on_body) stopped it" : ": cancelled");
  } else if (out.error) {
    out.message = describe(r) + ": ";
    if (end.outcome.result == resilience::attempt_result::refused ||
        end.outcome.result == resilience::attempt_result::connect_failure) {
      out.message += "cannot connect: ";
    }
    out.message += out.error.message();
    if (out.attempts > 1) {
      out.message += " (" + std::to_string(out.attempts) + " attempts)";
    }
  }
  if (h.duration != nullptr) {
    h.attempts->Increment(end.passes);
    h.duration->observe(clock_.now() - started);
    h.results[static_cast<std::size_t>(classify(out))]->Increment();
  }
  co_return out;
}

asio::awaitable<void> client::async_close() {
  co_await asio::co_spawn(executor_, close_on(shared_from_this()), asio::use_awaitable);
}

asio::awaitable<void> client::close_on(std::shared_ptr<client> self) {
  self->s_->closed = true;
  for (auto& [key, h] : self->s_->hosts) {
    if (h->refresh) {
      h->refresh->stop();
    }
  }
  for (auto& [key, h] : self->s_->hosts) {
    co_await h->upstream->at(0).pool(0).async_close();
  }
}

client::tls_stats client::handshakes() const noexcept {
  const auto& h = s_->handshakes;
  tls_stats out{h.full.load(std::memory_order_relaxed), h.resumed.load(std::memory_order_relaxed),
                0};
  for (const auto& failed : h.failures) {
    out.failed += failed.load(std::memory_order_relaxed);
  }
  return out;
}

std::optional<client::host_stats> client::stats(std::string_view host_name, std::uint16_t port,
                                                bool tls) const {
  const std::string key = host_key(host_name, port, tls);
  const auto found = s_->hosts.find(key);
  if (found == s_->hosts.end()) {
    return std::nullopt;
  }
  auto& target = found->second->upstream->at(0);
  host_stats out;
  out.pool = target.pool(0).stats();
  out.breaker = target.breaker ? target.breaker->state() : resilience::breaker_state::disabled;
  out.connections_opened = target.pool(0).get_connector().opened();
  out.dns_lookups = target.pool(0).get_connector().lookups() +
                    (found->second->refresh ? found->second->refresh->lookups : 0);
  return out;
}

} // namespace tether::http
