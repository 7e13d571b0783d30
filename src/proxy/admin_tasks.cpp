// What runs on the admin thread besides the admin listener: health checks, DNS lookups, outlier
// sweeps and the access log's flush, started together.
#include <asio/co_spawn.hpp>

#include "server_impl.hpp"
#include "tether/core/detached.hpp"

namespace tether::proxy {
namespace {

using namespace detail;

// The access log's lines are written by spdlog's thread as they come, through a stdio buffer:
// without a flush, a quiet proxy's last lines would sit there for minutes, and a crash would
// lose them. Once a second bounds both.
asio::awaitable<void> access_log_flush_loop(server::impl* s, asio::steady_timer* timer) {
  for (;;) {
    timer->expires_after(std::chrono::seconds{1});
    const auto [ec] = co_await timer->async_wait(use_tuple);
    if (ec || !s->started) {
      co_return;
    }
    s->shared.access->flush(); // queued behind the lines before it, written by spdlog's thread
  }
}

// Outlier detection's periodic sweep: hosts whose ejection time is over come back. Ends when a
// reload retires the cluster (its timer is gone then) or the proxy stops; a cluster that took
// over from it sweeps on the same schedule.
asio::awaitable<void> outlier_loop(server::impl* s, std::shared_ptr<proxy_cluster> c,
                                   asio::steady_timer* timer) {
  auto& cc = *c->upstream;
  for (;;) {
    timer->expires_at(*c->next_sweep);
    const auto [ec] = co_await timer->async_wait(use_tuple);
    if (ec || c->retired || !s->started) {
      co_return;
    }
    *c->next_sweep = steady::now() + cc.detector->options().interval;
    for (const auto& host : cc.detector->on_interval()) {
      log_event(s->shared, spdlog::level::info,
                "outlier detection returned " + host->address() + " to service");
    }
  }
}

} // namespace

void server::impl::start_admin_tasks() {
  using namespace detail;
  if (shared.access) {
    timers.push_back(std::make_unique<asio::steady_timer>(admin_io));
    asio::co_spawn(admin_io, access_log_flush_loop(this, timers.back().get()),
                   report_exceptions{"the access log's flush"});
  }
  for (const auto& c : shared.current->clusters) {
    start_cluster_tasks(c);
  }
}

void server::impl::start_cluster_tasks(const std::shared_ptr<detail::proxy_cluster>& c) {
  using namespace detail;
  const auto& cl = c->cfg;
  const auto timer = [&] {
    c->timers.push_back(std::make_unique<asio::steady_timer>(admin_io));
    return c->timers.back().get();
  };
  if (c->upstream->detector) {
    asio::co_spawn(admin_io, outlier_loop(this, c, timer()),
                   report_exceptions{"an outlier detection sweep"});
  }
  for (std::size_t e = 0; e < cl.endpoints.size(); ++e) {
    if (c->upstream->at(e).addresses) {
      asio::co_spawn(admin_io, resolve_loop(this, c, e, timer()),
                     report_exceptions{"a host's DNS refresh"});
    }
  }
  if (cl.health_check.kind == health_check_kind::none) {
    return;
  }
  if (cl.health_check.kind == health_check_kind::http) {
    http::client_options o;
    o.name = "health-check/" + cl.name;
    o.user_agent = "tether-health-check";
    o.pool.max_size = 1;
    o.tcp = cl.tcp;
    o.tcp.connect_timeout = cl.health_check.timeout;
    if (cl.tls) {
      o.tls = *cl.tls; // checked the way requests go: over TLS, verified alike
    }
    o.retry.max_attempts = 1;
    o.retry.overall_timeout = cl.health_check.timeout;
    o.budget.reset();
    o.breaker.reset();
    c->checker = http::client::create(admin_io.get_executor(), o);
  }
  for (std::size_t e = 0; e < cl.endpoints.size(); ++e) {
    asio::co_spawn(admin_io, health_loop(this, c, e, timer(), c->checker),
                   report_exceptions{"a host's health checks"});
  }
}

} // namespace tether::proxy
