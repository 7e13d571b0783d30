// A downstream connection (session.hpp): reading the client's requests, routing them, the
// attempts at hosts, and the answers the proxy gives itself.
#include "session.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>
#include <string>
#include <variant>

#include <asio/co_spawn.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include "tether/core/text.hpp"
#include "tether/http/request_target.hpp"
#include "tether/http/serializer.hpp"
#include "tether/http/server.hpp"
#include "tether/upstream/tried_hosts.hpp"

#include "access_log.hpp"
#include "router.hpp"

namespace tether::proxy::detail {

namespace {

/// Passes through tether a request may have made (its Via entries "tether") before it is taken
/// for a loop. A chain of sidecar, edge and sidecar is three.
constexpr std::size_t max_tether_hops = 10;

/// The Allow field of an answer the proxy gives as a request's final recipient.
constexpr http::header allowed_methods = {"Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"};

/// The upstream of a request that went to none, in the access log.
const std::string no_host = "-";

} // namespace

namespace {

tls::stream accepted(worker& w, std::size_t listener, asio::ip::tcp::socket s) {
  if (const auto& secured = w.gen->listener_contexts[listener]) {
    return tls::stream{std::move(s), secured->native(), tls::role::server};
  }
  return tls::stream{std::move(s)};
}

} // namespace

session::session(worker& w, std::size_t listener, asio::ip::tcp::socket s)
    : w_{w}, stream_{accepted(w, listener, std::move(s))},
      handshakes_{w.gen->listener_handshakes[listener]}, watchdog_{std::make_shared<watchdog>(
                                                             stream_.get_executor())},
      gen_{w.gen}, certificates_{w.gen->listener_contexts[listener]},
      listener_{w.gen->cfg.listeners[listener].name},
      tcp_cluster_{w.gen->listener_cluster[listener]},
      tcp_{w.gen->cfg.listeners[listener].tcp ? &*w.gen->cfg.listeners[listener].tcp : nullptr},
      parser_{http::parser::kind::request, w.gen->cfg.downstream.limits}, events_{w.heads},
      response_events_{w.heads} {
  // A WebSocket Upgrade becomes a tunnel; any other Upgrade (h2c) is ignored (RFC 9110 7.8).
  parser_.tunnel_only("websocket");
  watchdog_->client = &stream_.socket();
  std::error_code ec;
  const auto peer = stream_.socket().remote_endpoint(ec);
  client_ip_ = ec ? "unknown" : peer.address().to_string();
  w_.sessions.insert(this);
  ++w_.shared.downstream_active;
  w_.shared.downstream_opened->Increment();
}

session::~session() {
  watchdog_->stop();
  w_.sessions.erase(this);
  --w_.shared.downstream_active;
}

void session::adopt_if_idle() {
  if (idle_) {
    gen_ = w_.gen;
  }
}

void session::leave() {
  leaving_ = true;
  wake_if_idle();
}

void session::wake_if_idle() {
  if (idle_ && !head_started_ && parser_.idle()) {
    watchdog_->set(
        std::min(watchdog_->deadline, coarse_monotonic_clock::instance().now() + drain_grace));
  }
}

asio::awaitable<bool> session::secure() {
  // The handshake is part of the request's head: a client that opens TLS and stalls is cut off
  // at the request-header timeout like one that stalls in its head.
  watchdog_->set(steady::now() + gen_->cfg.downstream.request_header_timeout);
  const auto failed = co_await tls::async_accept(stream_);
  if (!failed) {
    handshakes_->completed(stream_);
    peer_subject_ = tls::peer_subject(stream_);
    co_return true;
  }
  handshakes_->failed_by(watchdog_->fired ? tls::failure_cause::timeout : tls::cause_of(failed));
  stream_.close();
  co_return false;
}

asio::awaitable<void> session::close() {
  std::error_code ignored;
  if (stream_.secured() && !aborted_) {
    // close_notify first: the client knows the end came on purpose (its answer is not waited
    // for; what it still sends is read below and dropped).
    watchdog_->set(steady::now() + std::chrono::seconds{1});
    co_await stream_.async_shutdown(use_tuple);
  }
  stream_.socket().shutdown(asio::socket_base::shutdown_send, ignored);
  // A lingering close: what the client still sends (the rest of a refused body, pipelined
  // requests) is read and dropped for a bounded time, so that closing with unread bytes does
  // not turn into a reset that destroys the answer before the client reads it.
  if (!aborted_) {
    watchdog_->set(steady::now() + std::chrono::seconds{1});
    std::size_t dropped = 0;
    while (!watchdog_->fired && dropped < 256 * 1024) {
      auto [ec, n] = co_await stream_.async_read_some(asio::buffer(small_), use_tuple);
      if (ec) {
        break;
      }
      dropped += n;
    }
  }
  stream_.close();
}

asio::awaitable<void> session::run() {
  if (stream_.secured() && !co_await secure()) {
    co_return;
  }
  if (tcp_cluster_ != generation::npos) {
    co_await run_tcp(); // (over a TLS listener: its client's bytes, deciphered)
    co_return;
  }
  std::uint32_t served = 0;
  for (;;) {
    // The next request's head: the idle timeout until its first byte, then the request-header
    // timeout from that byte (a head trickled in byte by byte cannot hold the connection).
    head_request_ = false; // the last request's; a 408 or 400 below is not an answer to it
    http10_ = false;
    // A reload during the last request: the connection lets go of the old config now, not at
    // its next request (which may never come before the idle timeout).
    adopt_newest();
    idle_ = true;
    event ev;
    const auto got = co_await next_event(ev, true);
    idle_ = false;
    idle_sweeps_ = 0;
    if (got != wait_result::ok) {
      // No head to answer: the request line is not known, but the answer is logged all the
      // same (a client that only ever gets 400s should show in the access log).
      int status = 0;
      if (got == wait_result::timeout && head_started_) {
        count(cause::header_timeout);
        const std::string why = "request header timeout";
        status = 408;
        co_await reply_error(status, why, true);
      } else if (got == wait_result::bad_input) {
        count(cause::bad_request);
        const auto e = static_cast<http::errc>(parser_.error().value());
        const std::string why = parser_.error().message();
        status = http::status_of(e);
        co_await reply_error(status, why, true);
      }
      if (status != 0) {
        access_line(status, steady::now() - head_first_byte_, "-", "-", "-", "-");
      }
      break;
    }
    head_started_ = false;
    auto* head = std::get_if<head_ptr>(&ev);
    if (head == nullptr) {
      break; // cannot happen: the parser starts every message with its head
    }
    ++served;
    adopt_newest(); // a reload since the last request: this one runs under the new config
    const auto most = gen_->cfg.downstream.max_requests_per_connection;
    const bool last = (most != 0 && served >= most) || leaving_ ||
                      w_.shared.draining.load(std::memory_order_relaxed);
    const bool keep = co_await handle(std::move(*head), last);
    if (!keep) {
      break;
    }
    events_.trim();
    response_events_.trim();
  }
  co_await close();
}

void session::abort() {
  aborted_ = true;
  watchdog_->abort_now();
  if (tunneling_) {
    // A relay's waits may have completed already (their handlers queued), which a cancel does
    // not reach: closing the sockets ends both directions at their next look.
    std::error_code ignored;
    stream_.socket().close(ignored);
    if (watchdog_->upstream != nullptr) {
      watchdog_->upstream->close(ignored);
    }
  }
}

asio::awaitable<wait_result> session::next_event(event& out, bool waiting_for_head) {
  // Copied: a reload may swap the session's generation while it waits here idle.
  const auto idle_timeout = gen_->cfg.downstream.idle_timeout;
  const auto header_timeout = gen_->cfg.downstream.request_header_timeout;
  for (;;) {
    if (!events_.empty()) {
      out = std::move(events_.front());
      events_.pop_front();
      co_return wait_result::ok;
    }
    if (parser_.error()) {
      co_return wait_result::bad_input;
    }
    if (closing_) {
      co_return wait_result::eof;
    }
    if (waiting_for_head && parser_.idle()) {
      buffer_.reset(); // between requests: nothing in it is needed any more
    }
    // Deadlines of seconds: the coarse clock (the same clock, a tick behind at most, read
    // without the TSC) is precise enough for them, here and for the header deadline below.
    const auto now = coarse_monotonic_clock::instance().now();
    steady::time_point deadline = now + idle_timeout;
    if (waiting_for_head && head_started_) {
      deadline = head_deadline_;
    } else if (waiting_for_head && parser_.idle() &&
               (leaving_ || w_.shared.draining.load(std::memory_order_relaxed))) {
      deadline = std::min(deadline, now + drain_grace);
    }
    watchdog_->set(deadline);
    // A request's first read goes into the session's small buffer (most heads fit); only a
    // head or body that fills it gets a 16 KiB one, given back between requests. So an idle
    // client costs 2 KiB of buffer, and waiting needs no extra readiness round trip.
    char* into = buffer_ ? buffer_->data() : small_.data();
    const std::size_t room = buffer_ ? buffer_->size() : small_.size();
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(into, room), use_tuple);
    if (watchdog_->fired) {
      co_return wait_result::timeout;
    }
    if (ec) {
      co_return ec == asio::error::eof ? wait_result::eof : wait_result::error;
    }
    if (waiting_for_head && !head_started_) {
      head_started_ = true;
      head_first_byte_ = coarse_monotonic_clock::instance().now();
      head_deadline_ = head_first_byte_ + header_timeout;
    }
    if (!buffer_ && n == room) {
      buffer_ = std::make_unique<std::array<char, read_size>>(); // more is coming
    }
    const auto used = parser_.feed({into, n}, events_);
    if (parser_.upgraded()) {
      // A CONNECT's head or an Upgrade's end: what follows is the tunnel's, and the parser
      // reads no more.
      tunnel_bytes_.assign(into + used, n - used);
      closing_ = true;
    }
  }
}

asio::awaitable<bool> session::drain_request_body() {
  for (;;) {
    event ev;
    if (co_await next_event(ev, false) != wait_result::ok) {
      co_return false;
    }
    if (std::holds_alternative<message_end>(ev)) {
      co_return true;
    }
  }
}

asio::awaitable<void> session::reply_error(int status, const std::string& reason, bool close,
                                           const http::header* field) {
  // The proxy answers as an origin server would (http::write_own_response): its reason in
  // X-Tether-Reason and the body, and `field` (an Allow) when given.
  const std::string body = reason + "\n";
  const std::array<http::header, 2> own = {http::header{"X-Tether-Reason", reason},
                                           field != nullptr ? *field : http::header{}};
  std::string out;
  http::write_own_response(
      out, {status, "text/plain", std::span{own}.first(field ? 2 : 1), body, head_request_,
            close ? http::connection_field::close
                  : (http10_ ? http::connection_field::keep_alive : http::connection_field::none)});
  co_await asio::async_write(stream_, asio::buffer(out), use_tuple);
}

asio::awaitable<bool> session::refuse(request_context& rq, int status, const std::string& why,
                                      std::string_view upstream, const http::header* field) {
  // A client still waiting for 100 Continue sends no body: answer now, and close.
  const bool clean =
      rq.consumed || (rq.client_keep && !(rq.expects_continue && !rq.continue_sent) &&
                      co_await drain_request_body());
  co_await reply_error(status, why, !(clean && rq.client_keep), field);
  log_answer(rq, status, upstream);
  co_return clean&& rq.client_keep;
}

asio::awaitable<bool> session::reject(request_context& rq, int status, const std::string& why) {
  co_await reply_error(status, why, true);
  log_answer(rq, status, "-");
  co_return false;
}

void session::log_answer(request_context& rq, int status, std::string_view upstream) {
  if (rq.counters != nullptr) {
    observe(*rq.counters, status, rq.started, rq.head(), rq.cluster, upstream);
  } else {
    access_line(status, steady::now() - rq.started, rq.head().method, rq.head().target, rq.cluster,
                upstream);
  }
}

asio::awaitable<void> session::send_continue(request_context& rq) {
  if (rq.expects_continue && !rq.continue_sent) {
    rq.continue_sent = true;
    const std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
    co_await asio::async_write(stream_, asio::buffer(cont), use_tuple);
  }
}

std::optional<session::own_answer> session::vet(const request_context& rq,
                                                http::request_target& target,
                                                std::string_view& authority,
                                                std::optional<std::uint64_t>& max_forwards) const {
  const auto& head = rq.head();
  if (http10_ && head.framing == http::body_framing::chunked) {
    // Chunked framing in HTTP/1.0 is faulty (RFC 9112 6.1): an upstream reading it as 1.0
    // would take the chunks for another request.
    return own_answer{400, "Transfer-Encoding in an HTTP/1.0 request", true, std::nullopt};
  }
  // The target's form and the Host rules (RFC 9112 3.2), checked before the request goes
  // anywhere. A request broken this way is not read further: 400, and close.
  if (auto ec = http::read_request_target(head.method, head.target, target);
      ec || (ec = http::check_host(head.host, head.version_minor, target, authority))) {
    return own_answer{400, ec.message(), true, cause::bad_request};
  }
  // RFC 9110 7.3: an intermediary MUST NOT forward a message to itself unless it is protected
  // from a loop. A request that went through tether this often already is taken for one (a
  // route that leads back to the proxy): 508, rather than a connection per pass until the
  // descriptors run out.
  if (head.has_via && tether_hops(head) >= max_tether_hops) {
    return own_answer{508,
                      "request loop: it went through tether " + std::to_string(max_tether_hops) +
                          " times (see its Via)",
                      false, cause::bad_request};
  }
  // RFC 9110 7.6.2: an OPTIONS or TRACE request with Max-Forwards 0 is answered here, as its
  // final recipient; with more, it goes on with one less. TRACE is not echoed (a response
  // showing a request's credentials to a script is what cross-site tracing abuses).
  if (head.method == "OPTIONS" || head.method == "TRACE") {
    if (const auto v = head.find("max-forwards")) {
      std::uint64_t n = 0;
      const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
      if (ec != std::errc{} || end != v->data() + v->size()) {
        return own_answer{400, "invalid Max-Forwards (a number of hops)", true, cause::bad_request};
      }
      if (n == 0) {
        const bool options = head.method == "OPTIONS";
        return own_answer{options ? 200 : 405,
                          options ? "answered by tether: Max-Forwards is 0"
                                  : "TRACE is not echoed: Max-Forwards is 0",
                          false, std::nullopt, &allowed_methods};
      }
      max_forwards = n - 1;
    }
  }
  return std::nullopt;
}

asio::awaitable<bool> session::handle(head_ptr head_in, bool last) {
  request_context rq;
  rq.owner = std::move(head_in);
  rq.started = steady::now();
  const auto& head = rq.head();
  // After an Upgrade or a CONNECT the parser reads no more: what follows is a tunnel's (or, when
  // none is made, bytes that are not HTTP), and the connection closes after the answer.
  rq.client_keep = head.keep_alive && !last && !head.upgrade;
  head_request_ = head.method == "HEAD";
  http10_ = head.version_major == 1 && head.version_minor == 0;
  const auto expect = head.find("expect");
  // 100 Continue is for HTTP/1.1 clients only (RFC 9110 15.2).
  rq.expects_continue = expect && iequals(*expect, "100-continue") && !http10_;
  // What the request is for, and whether the proxy answers it itself.
  http::request_target target;
  std::string_view authority;
  std::optional<std::uint64_t> max_forwards;
  if (auto answer = vet(rq, target, authority, max_forwards)) {
    if (answer->counted) {
      count(*answer->counted);
    }
    if (answer->close) {
      co_return co_await reject(rq, answer->status, answer->why);
    }
    co_return co_await refuse(rq, answer->status, answer->why, "-", answer->field);
  }
  if (target.form == http::target_form::authority) {
    co_return co_await connect_request(rq, target.authority); // CONNECT: a tunnel
  }
  const generation& gen = *gen_;
  const auto route_index = find_route(gen.cfg.routes, authority, target, peer_subject_);
  if (!route_index) {
    count(cause::no_route);
    const std::string why = "no route for " + std::string{head.target};
    co_return co_await refuse(rq, 404, why, "-");
  }
  const auto ci = gen.route_cluster[*route_index];
  const auto& cluster_cfg = gen.cfg.clusters[ci];
  const retry_config& rc = *gen.route_retry[*route_index];
  auto& cc = *gen.clusters[ci];
  rq.counters = &cc;
  rq.cluster = cluster_cfg.name;
  // A WebSocket Upgrade is tunnelled when the upstream answers 101.
  rq.upgrade = head.upgrade && head.framing == http::body_framing::none;

  // Envoy's thresholds: past max_requests in flight, the request costs the cluster nothing.
  resilience::resource_guard request_slot{cc.upstream->limits->requests};
  if (!request_slot) {
    cc.upstream->overflowed(resource::requests);
    count(cause::overflow);
    const std::string why = "cluster request limit reached";
    co_return co_await refuse(rq, 503, why, "-");
  }

  // A request with no body still ends with an event: take it off the queue.
  const auto framing = head.framing;
  if (framing == http::body_framing::none) {
    event end;
    if (co_await next_event(end, false) != wait_result::ok) {
      count(cause::downstream_reset);
      co_return false;
    }
    rq.consumed = true;
  }
  // A body that a retry may need is read whole first, up to the buffer limit; past it the
  // rest is streamed and the request is not sent twice.
  const bool has_key = head.find("idempotency-key").has_value();
  const bool may_resend = has_key || resilience::is_idempotent_method(head.method);
  using resilience::retry_on;
  const bool retries_after_send =
      rc.policy.max_attempts > 1 &&
      (static_cast<std::uint32_t>(rc.policy.conditions) &
       ~static_cast<std::uint32_t>(retry_on::connect_failure | retry_on::refused)) != 0;
  std::string body;
  if (!rq.consumed && may_resend && retries_after_send && rc.buffer_limit > 0 &&
      (framing == http::body_framing::chunked || head.content_length <= rc.buffer_limit)) {
    co_await send_continue(rq);
    while (body.size() <= rc.buffer_limit) {
      event ev;
      if (co_await next_event(ev, false) != wait_result::ok) {
        co_return co_await client_failed(rq);
      }
      if (auto* piece = std::get_if<body_piece>(&ev)) {
        body.append(piece->data);
      } else if (std::holds_alternative<message_end>(ev)) {
        rq.consumed = true;
        break;
      }
    }
  }
  const forward_plan plan{target, authority, max_forwards, cc, cluster_cfg, rc, body, has_key};
  const bool keep = co_await forward(rq, plan);
  if (upgraded_) {
    // The 101 is answered and logged, the attempts are over (no retry slot held): the tunnel.
    co_await tunnel_upgrade(cc);
  }
  co_return keep;
}

asio::awaitable<bool> session::forward(request_context& rq, const forward_plan& plan) {
  const auto& head = rq.head();
  auto& cc = plan.cc;
  const auto& cluster_cfg = plan.cluster_cfg;
  // (No more locals than needed here: each one is in the coroutine's frame, which Asio recycles
  // only under 1 KiB.)
  upstream::attempts tries{{plan.rc.policy,
                            {head.method, plan.has_key, rq.consumed},
                            rq.started,
                            cc.upstream->budget.get(),
                            &cc.upstream->limits->retries}};

  // Expect: 100-continue goes upstream with a body that streams, so that the upstream says
  // whether it wants the body (a 401 or 413 then costs no upload) and its 100 reaches the
  // client; a body read whole here first was answered 100 by the proxy already.
  const bool forward_expect = rq.expects_continue && !rq.continue_sent && !rq.consumed;
  upstream_head head_out{head,       plan.target,    plan.authority,
                         client_ip_, forward_expect, plan.max_forwards};
  if (rq.upgrade) {
    head_out.keep_upgrade();
  }
  // The head and what goes upstream are built in strings borrowed from the worker, whose
  // capacity stays from one request to the next.
  borrowed_string head_buffer{w_};
  borrowed_string out_buffer{w_};
  if (!head_out.needs_upstream_host()) {
    head_out.write(head_buffer.get(), {});
  }
  proxy_exchange ex{*this,
                    rq,
                    head_out,
                    head_buffer.get(),
                    out_buffer.get(),
                    plan.body,
                    head.framing == http::body_framing::chunked,
                    forward_expect,
                    cluster_cfg.request_timeout};
  const auto end = co_await upstream::attempt_loop(*cc.upstream, tries, ex,
                                                   {w_.id, monotonic_clock::instance(), w_.random,
                                                    cluster_cfg.pool.acquire_timeout, rq.started});
  if (end.how == upstream::loop_end::kind::answered) {
    // The usual end, here rather than in conclude: a coroutine frame less per request.
    observe(cc, ex.status, rq.started, rq.head(), rq.cluster, cc.upstream->at(end.host).name());
    co_return ex.keep;
  }
  co_return co_await conclude(rq, ex, end);
}

asio::awaitable<bool> session::conclude(request_context& rq, const proxy_exchange& ex,
                                        const upstream::loop_end& end) {
  auto& cc = *rq.counters;
  const std::string& host_name =
      end.host == upstream::loop_end::npos ? no_host : cc.upstream->at(end.host).name();
  using why = upstream::loop_end::why;
  switch (end.how) {
  case upstream::loop_end::kind::answered: // handled by handle()
    co_return ex.keep;
  case upstream::loop_end::kind::stopped:
    switch (ex.stop) {
    case proxy_exchange::stop_kind::client_failed:
      co_return co_await client_failed(rq);
    case proxy_exchange::stop_kind::client_gone:
      if (ex.status != 0) {
        observe(cc, ex.status, rq.started, rq.head(), rq.cluster, host_name);
      }
      co_return false;
    case proxy_exchange::stop_kind::aborted:
      co_return false;
    case proxy_exchange::stop_kind::none:
      break; // the wait before a retry was cut short: a stop past its drain time
    }
    {
      count(cause::upstream_timeout);
      const std::string why_text = "upstream timeout";
      co_return co_await refuse(rq, 504, why_text, host_name);
    }
  case upstream::loop_end::kind::gave_up:
    break;
  }
  if (end.cause == why::circuit_open) {
    count(cause::circuit_open);
    const std::string why_text = "circuit breaker open for every host";
    co_return co_await refuse(rq, 503, why_text, no_host);
  }
  if (end.cause == why::overflow) {
    count(cause::overflow);
    const std::string why_text = end.limit == upstream::resource::pending_requests
                                     ? "cluster pending request limit reached"
                                     : "cluster connection limit reached";
    co_return co_await refuse(rq, 503, why_text, host_name);
  }
  if (end.cause == why::pool_busy) {
    count(cause::pool_timeout);
    const std::string why_text = "upstream pool busy";
    co_return co_await refuse(rq, 503, why_text, host_name);
  }
  // The last attempt ended with no response, and is not retried.
  const auto& head = rq.head();
  const bool timed_out = end.outcome.result == resilience::attempt_result::timeout;
  const bool connect = end.outcome.request_not_sent();
  count(end.malformed ? cause::bad_response
                      : (timed_out ? cause::upstream_timeout
                                   : (connect ? cause::connect_failure : cause::upstream_reset)));
  log_event(w_.shared, spdlog::level::debug,
            std::to_string(timed_out ? 504 : 502) + " for " + std::string{head.method} + " " +
                std::string{head.target} + ": " + host_name + ": " + end.failure);
  if (!connect) {
    // Part of the request went upstream; the connection to the client is not reused.
    rq.client_keep = false;
  }
  co_return co_await refuse(rq, timed_out ? 504 : 502, end.failure, host_name);
}

// Not coroutines: they hand over the session's own (one coroutine frame less per request).
asio::awaitable<upstream::exchange_end> session::proxy_exchange::exchange(upstream_attempt& a) {
  return s.exchange(*this, a);
}

asio::awaitable<bool> session::proxy_exchange::back_off(clock::duration delay) {
  return s.backoff(delay);
}

void session::proxy_exchange::on_retry(const upstream_host& h, const upstream::exchange_end& r) {
  log_event(s.w_.shared, spdlog::level::debug,
            "retrying " + std::string{rq.head().method} + " " + std::string{rq.head().target} +
                " after " + h.name() + ": " + r.failure);
}

void session::proxy_exchange::on_replay(const upstream_host& h) {
  log_event(s.w_.shared, spdlog::level::debug,
            "sending " + std::string{rq.head().method} + " " + std::string{rq.head().target} +
                " again: " + h.name() + " closed a kept-alive connection");
}

session::upload session::prepare_request(proxy_exchange& ex, upstream_attempt& a) {
  auto& rq = ex.rq;
  auto& up = *a.lease();
  if (ex.head_out.needs_upstream_host()) {
    ex.head_out.write(ex.head_bytes, a.target().name());
  }
  if (rq.head().method == "HEAD") {
    up.parser.expect_head_response();
  }
  std::string& out = ex.out;
  out.assign(ex.head_bytes);
  if (!ex.body.empty()) {
    if (ex.chunked) {
      http::write_chunk(out, ex.body);
    } else {
      out.append(ex.body);
    }
  }
  if (rq.consumed && ex.chunked) {
    http::write_last_chunk(out);
  }
  // The upstream is watched while a body streams; a body read whole (at most buffer_limit) goes
  // in one write the socket buffers take.
  return {out, ex.chunked, ex.forward_expect, !rq.consumed, a.deadline(), ex.request_timeout};
}

std::optional<upstream::exchange_end> session::sent_badly(proxy_exchange& ex, upstream_attempt& a,
                                                          const send_end& sent) {
  using upstream::exchange_end;
  auto& lease = a.lease();
  if (sent.client_failed) {
    // The client went away (or sent garbage) mid-body: the upstream has half a request.
    lease.mark_broken();
    ex.stop = proxy_exchange::stop_kind::client_failed;
    exchange_end r;
    r.how = exchange_end::kind::stopped;
    return r;
  }
  if (!sent.complete) {
    // The upstream has part of the request: it is out of step, and so is the client, whose
    // body was not all read.
    lease.mark_broken();
    ex.rq.client_keep = false;
  }
  if (sent.timed_out) {
    exchange_end r;
    r.outcome.result = resilience::attempt_result::timeout;
    r.failure = "upstream timeout";
    return r;
  }
  return std::nullopt;
}

upstream::exchange_end session::exchange_result(proxy_exchange& ex, upstream_attempt& a,
                                                response_end& got) {
  using upstream::exchange_end;
  exchange_end r;
  ex.status = got.status;
  if (got.client_gone) {
    ex.stop = proxy_exchange::stop_kind::client_gone;
    r.how = exchange_end::kind::stopped;
  } else if (got.forwarded) {
    a.lease().reset();
    ex.keep = got.keep;
    r.how = exchange_end::kind::answered;
  } else if (got.retry) {
    // A failed response that will be retried (decided at its head).
    r.how = exchange_end::kind::retry;
    r.delay = got.delay;
  } else {
    r.outcome = got.outcome;
    r.failure = std::move(got.failure);
    r.response_bytes = got.bytes_read;
    // A malformed response (or an unasked 101): the upstream is broken in a way a retry will
    // not mend.
    r.malformed = got.outcome.result == resilience::attempt_result::http_status;
  }
  return r;
}

asio::awaitable<bool> session::client_failed(request_context& rq) {
  count(parser_.error() ? cause::bad_request : cause::downstream_reset);
  int status = client_closed_request;
  if (parser_.error()) {
    const auto e = static_cast<http::errc>(parser_.error().value());
    const std::string why = parser_.error().message();
    status = http::status_of(e);
    co_await reply_error(status, why, true);
    log_answer(rq, status, "-");
  } else {
    access_line(status, steady::now() - rq.started, rq.head().method, rq.head().target, rq.cluster,
                "-");
  }
  co_return false;
}

asio::awaitable<bool> session::backoff(clock::duration delay) {
  if (delay <= clock::duration::zero()) {
    co_return !aborted_;
  }
  asio::steady_timer timer{stream_.get_executor(), delay};
  watchdog_->set(steady::time_point::max()); // the last attempt's deadline is over and done
  watchdog_->sleeper = &timer;
  co_await timer.async_wait(use_tuple);
  watchdog_->sleeper = nullptr;
  co_return !aborted_;
}

void session::observe(proxy_cluster& c, int status, steady::time_point started,
                      const owned_head& head, std::string_view cluster, std::string_view upstream) {
  const auto cls = static_cast<std::size_t>(std::clamp(status / 100, 1, 5) - 1);
  c.responses[cls]->Increment();
  const auto took = steady::now() - started;
  c.duration->observe(took);
  access_line(status, took, head.method, head.target, cluster, upstream);
}

void session::access_line(int status, steady::duration took, std::string_view method,
                          std::string_view target, std::string_view cluster,
                          std::string_view upstream) {
  log_access(w_.shared, client_ip_, status, took, method, target, cluster, upstream, peer_subject_);
}

asio::awaitable<void> serve(worker* w, std::size_t listener, asio::ip::tcp::socket socket) {
  session s{*w, listener, std::move(socket)};
  co_await s.run();
}

} // namespace tether::proxy::detail
