// Tunnels (session.hpp): a tcp listener's connections, CONNECT, a WebSocket Upgrade. A host of a
// cluster is connected as a request's connection is (upstream::attempt_loop: balancer, thresholds,
// breakers, retries on connect failures), then the two sockets are relayed both ways by net::relay
// (spliced), or by net::copy_relay when either side speaks TLS with tether.
#include "session.hpp"

#include <asio/write.hpp>

#include "access_log.hpp"
#include "router.hpp"

namespace tether::proxy::detail {

namespace {

/// Why no tunnel: the status in the access log (and to a CONNECT's client), and the cause
/// counted.
struct tunnel_refusal {
  int status = 502;
  cause counted = cause::connect_failure;
};

tunnel_refusal refusal_of(const upstream::loop_end& end) {
  using why = upstream::loop_end::why;
  if (end.how == upstream::loop_end::kind::stopped) {
    return {client_closed_request, cause::downstream_reset};
  }
  switch (end.cause) {
  case why::circuit_open:
    return {503, cause::circuit_open};
  case why::overflow:
    return {503, cause::overflow};
  case why::pool_busy:
    return {503, cause::pool_timeout};
  case why::none:
  case why::failed:
    break;
  }
  return {};
}

/// Why a tunnel was refused, in words.
std::string reason_of(const upstream::loop_end& end, const tunnel_refusal& r) {
  if (!end.failure.empty()) {
    return end.failure;
  }
  switch (r.counted) {
  case cause::circuit_open:
    return "circuit breaker open for every host";
  case cause::overflow:
    return "cluster connection limit reached";
  case cause::pool_timeout:
    return "no connection within the acquire timeout";
  default:
    return "no connection";
  }
}

} // namespace

asio::awaitable<upstream::exchange_end> session::tunnel_exchange::exchange(upstream_attempt& a) {
  out.take(a); // the pool lets go of it: the tunnel owns the socket now
  // Connected: a success for the host's breaker and outlier detection.
  (void)a.at_response(resilience::attempt_outcome{});
  upstream::exchange_end r;
  r.how = upstream::exchange_end::kind::answered;
  co_return r;
}

void session::tunnel_exchange::on_retry(const upstream_host& h, const upstream::exchange_end& r) {
  log_event(s.w_.shared, spdlog::level::debug,
            "listener '" + s.listener_ + "': connecting again after " + h.name() + ": " +
                r.failure);
}

asio::awaitable<void> session::connect_tunnel(proxy_cluster& cc,
                                              const resilience::retry_policy& policy,
                                              steady::time_point started, tunnel_end& out) {
  auto& up = *cc.upstream;
  // Only a connection that could not be made is tried again (the retry policy's conditions
  // past that never arise: nothing is sent before the tunnel is up).
  upstream::attempts tries{
      {policy, {"CONNECT", false, true}, started, up.budget.get(), &up.limits->retries}};
  tunnel_exchange ex{*this, out};
  out.how = co_await upstream::attempt_loop(
      up, tries, ex,
      {w_.id, monotonic_clock::instance(), w_.random, cc.cfg.pool.acquire_timeout, started});
  if (out.how.how != upstream::loop_end::kind::answered &&
      out.how.host != upstream::loop_end::npos) {
    out.host = up.at(out.how.host).name(); // the last host tried, for the log
  }
}

asio::awaitable<void> session::tunnel(tls::stream& upstream, tunnel_kind kind, clock::duration idle,
                                      std::string_view to_client) {
  auto& t = w_.shared.tunnels;
  const auto k = static_cast<std::size_t>(kind);
  if (aborted_) {
    co_return;
  }
  t.opened[k]->Increment();
  ++t.active[k];
  tunneling_ = true;
  // The relay ends itself (both ends closed, an error, the idle timeout); an abort closes both
  // sockets (abort()).
  watchdog_->set(steady::time_point::max());
  watchdog_->upstream = &upstream.socket();
  bool ahead_sent = true;
  if (!to_client.empty()) {
    auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(to_client), use_tuple);
    t.bytes_down[k]->Increment(static_cast<double>(n));
    ahead_sent = !ec;
  }
  if (ahead_sent && !tunnel_bytes_.empty()) {
    auto [ec, n] = co_await asio::async_write(upstream, asio::buffer(tunnel_bytes_), use_tuple);
    t.bytes_up[k]->Increment(static_cast<double>(n));
    tunnel_bytes_.clear();
    ahead_sent = !ec;
  }
  if (ahead_sent) {
    net::relay_options options{
        idle, [up = t.bytes_up[k], down = t.bytes_down[k]](bool to_upstream, std::size_t n) {
          (to_upstream ? up : down)->Increment(static_cast<double>(n));
        }};
    net::relay_totals totals;
    if (stream_.secured() || upstream.secured()) {
      // Bytes deciphered on the way in or enciphered on the way out (a TLS listener's client, a
      // cluster with tls) cannot be spliced: copied.
      totals = co_await net::copy_relay(stream_, upstream, std::move(options));
    } else {
      totals = co_await net::relay(stream_.socket(), upstream.socket(), std::move(options));
    }
    if (totals.idle) {
      t.idle_closed[k]->Increment();
    }
  }
  tunneling_ = false;
  watchdog_->upstream = nullptr;
  --t.active[k];
}

asio::awaitable<void> session::tunnel_upgrade(proxy_cluster& cc) {
  const auto up = std::move(upgraded_);
  // The Upgrade's route has no tunnel settings of its own: a WebSocket with nothing moving
  // either way for the downstream idle timeout is closed (nginx's proxy_read_timeout does so
  // too; WebSocket pings keep a live one open).
  const upstream_cluster::in_flight counted{*cc.upstream, w_.id, up->how.host};
  co_await tunnel(up->upstream, tunnel_kind::upgrade, gen_->cfg.downstream.idle_timeout,
                  up->first_bytes);
}

asio::awaitable<void> session::run_tcp() {
  const auto started = steady::now();
  proxy_cluster& cc = *gen_->clusters[tcp_cluster_];
  tunnel_end end{stream_.get_executor()};
  co_await connect_tunnel(cc, cc.cfg.retry.policy, started, end);
  if (end.how.how != upstream::loop_end::kind::answered) {
    // No host took the connection: there is no one to tell but the access log and the counters;
    // the client's connection closes.
    const auto refused = refusal_of(end.how);
    count(refused.counted);
    log_event(w_.shared, spdlog::level::debug,
              "listener '" + listener_ + "': no connection to cluster '" + cc.cfg.name +
                  "': " + reason_of(end.how, refused));
    access_line(refused.status, steady::now() - started, "TCP", listener_, cc.cfg.name, end.host);
    stream_.close();
    co_return;
  }
  {
    // Counted as in flight at its host while it lasts: least_request balances tunnels too.
    const upstream_cluster::in_flight counted{*cc.upstream, w_.id, end.how.host};
    co_await tunnel(end.upstream, tunnel_kind::tcp, tcp_->idle_timeout);
  }
  access_line(200, steady::now() - started, "TCP", listener_, cc.cfg.name, end.host);
}

asio::awaitable<bool> session::connect_request(request_context& rq, std::string_view authority) {
  const generation& gen = *gen_;
  const auto route_index = find_connect_route(gen.cfg.routes, authority, peer_subject_);
  if (!route_index) {
    count(cause::no_route);
    const std::string why = "no route allows CONNECT to " + std::string{authority};
    co_return co_await reject(rq, 403, why);
  }
  auto& cc = *gen.clusters[gen.route_cluster[*route_index]];
  const auto& allowed = *gen.cfg.routes[*route_index].connect;
  rq.counters = &cc;
  rq.cluster = cc.cfg.name;
  // A tunnel is a request in flight for the cluster's max_requests, for as long as it lasts.
  resilience::resource_guard request_slot{cc.upstream->limits->requests};
  if (!request_slot) {
    cc.upstream->overflowed(resource::requests);
    count(cause::overflow);
    const std::string why = "cluster request limit reached";
    co_return co_await reject(rq, 503, why);
  }
  event end_of_head; // a CONNECT has no content: its end follows its head
  if (co_await next_event(end_of_head, false) != wait_result::ok) {
    count(cause::downstream_reset);
    co_return false;
  }
  tunnel_end up{stream_.get_executor()};
  co_await connect_tunnel(cc, gen.route_retry[*route_index]->policy, rq.started, up);
  if (up.how.how != upstream::loop_end::kind::answered) {
    const auto refused = refusal_of(up.how);
    count(refused.counted);
    if (up.how.how == upstream::loop_end::kind::stopped) {
      co_return false;
    }
    const std::string why = reason_of(up.how, refused);
    co_await reply_error(refused.status, why, true);
    log_answer(rq, refused.status, up.host);
    co_return false;
  }
  if (aborted_) {
    co_return false; // a stop past its drain time while connecting: no tunnel to announce
  }
  // RFC 9110 9.3.6: a 2xx, with no content, and the tunnel begins after it (what the client sent
  // behind its head already, a TLS ClientHello say, goes first: tunnel()).
  const std::string_view established = "HTTP/1.1 200 Connection established\r\n\r\n";
  auto [answer_error, answered] =
      co_await asio::async_write(stream_, asio::buffer(established), use_tuple);
  if (answer_error) {
    co_return false;
  }
  {
    const upstream_cluster::in_flight counted{*cc.upstream, w_.id, up.how.host};
    co_await tunnel(up.upstream, tunnel_kind::connect, allowed.idle_timeout);
  }
  cc.responses[static_cast<std::size_t>(response_class::c2xx)]->Increment();
  access_line(200, steady::now() - rq.started, "CONNECT", authority, cc.cfg.name, up.host);
  co_return false;
}

} // namespace tether::proxy::detail
