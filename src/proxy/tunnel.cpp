// Tunnels (session.hpp): a tcp listener's connections. A host of a cluster is connected as a
// request's connection is (upstream::attempt_loop: balancer, thresholds, breakers, retries on
// connect failures), then the two sockets are relayed both ways by net::relay (spliced).
#include "session.hpp"

#include "access_log.hpp"

namespace tether::proxy::detail {

asio::awaitable<upstream::exchange_end> session::tunnel_exchange::exchange(upstream_attempt& a) {
  auto& lease = a.lease();
  out.slot = std::move(lease->slot);
  out.upstream = std::move(lease->stream.socket());
  lease.mark_broken(); // the pool lets go of it: the tunnel owns the socket now
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

asio::awaitable<void> session::connect_tunnel(proxy_cluster& cc, steady::time_point started,
                                              tunnel_end& out) {
  auto& up = *cc.upstream;
  // Only a connection that could not be made is tried again (the retry policy's conditions
  // past that never arise: nothing is sent before the tunnel is up).
  upstream::attempts tries{{cc.cfg.retry.policy,
                            {"CONNECT", false, true},
                            started,
                            up.budget.get(),
                            &up.limits->retries}};
  tunnel_exchange ex{*this, out};
  out.how = co_await upstream::attempt_loop(
      up, tries, ex,
      {w_.id, monotonic_clock::instance(), w_.random, cc.cfg.pool.acquire_timeout, started});
  if (out.how.host != upstream::loop_end::npos) {
    out.host = up.at(out.how.host).name();
  }
}

asio::awaitable<net::relay_totals> session::tunnel(asio::ip::tcp::socket& upstream,
                                                   tunnel_kind kind, clock::duration idle) {
  auto& t = w_.shared.tunnels;
  const auto k = static_cast<std::size_t>(kind);
  t.opened[k]->Increment();
  if (aborted_) {
    co_return net::relay_totals{0, 0, asio::error::operation_aborted};
  }
  ++t.active[k];
  // The relay ends itself (both ends closed, an error, the idle timeout); an abort cancels both
  // sockets through the watchdog.
  watchdog_->set(steady::time_point::max());
  watchdog_->upstream = &upstream;
  net::relay_options options{idle, [up = t.bytes_up[k], down = t.bytes_down[k]](
                                       bool to_upstream, std::size_t n) {
                               (to_upstream ? up : down)->Increment(static_cast<double>(n));
                             }};
  auto totals = co_await net::relay(stream_.socket(), upstream, std::move(options));
  watchdog_->upstream = nullptr;
  --t.active[k];
  if (totals.idle) {
    t.idle_closed[k]->Increment();
  }
  co_return totals;
}

asio::awaitable<void> session::run_tcp() {
  const auto started = steady::now();
  proxy_cluster& cc = *gen_->clusters[tcp_cluster_];
  tunnel_end end{stream_.get_executor()};
  co_await connect_tunnel(cc, started, end);
  if (end.how.how != upstream::loop_end::kind::answered) {
    // No host took the connection: there is no one to tell but the access log and the counters;
    // the client's connection closes.
    using why = upstream::loop_end::why;
    int status = 502;
    cause c = cause::connect_failure;
    if (end.how.how == upstream::loop_end::kind::stopped) {
      status = client_closed_request;
      c = cause::downstream_reset;
    } else if (end.how.cause == why::circuit_open) {
      status = 503;
      c = cause::circuit_open;
    } else if (end.how.cause == why::overflow) {
      status = 503;
      c = cause::overflow;
    } else if (end.how.cause == why::pool_busy) {
      status = 503;
      c = cause::pool_timeout;
    }
    count(c);
    log_event(w_.shared, spdlog::level::debug,
              "listener '" + listener_ + "': no connection to cluster '" + cc.cfg.name + "': " +
                  (end.how.failure.empty() ? std::string{cause_names[static_cast<std::size_t>(c)]}
                                           : end.how.failure));
    access_line(status, steady::now() - started, "TCP", listener_, cc.cfg.name, end.host);
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

} // namespace tether::proxy::detail
