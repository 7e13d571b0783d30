// Hosts given by name, looked up again every resolve_interval.
#include <asio/ip/tcp.hpp>

#include "server_impl.hpp"

namespace tether::proxy::detail {

// A host given by name is looked up at start and every resolve_interval; new connections use
// the last answer (a failed lookup keeps it), so they follow DNS changes as connections turn
// over, and no connection waits for a lookup once the first answer is in. Ends when a reload
// retires the cluster (the timer is gone then: not touched once `retired` is seen).
asio::awaitable<void> resolve_loop(server::impl* s, std::shared_ptr<proxy_cluster> c, std::size_t e,
                                   asio::steady_timer* timer) {
  const auto& cl = c->cfg;
  const auto& ep = cl.endpoints[e];
  auto& counters = c->upstream->at(e);
  asio::ip::tcp::resolver resolver{timer->get_executor()};
  std::vector<asio::ip::tcp::endpoint> last;
  for (;;) {
    auto [ec, results] =
        co_await resolver.async_resolve(ep.host, std::to_string(ep.port), use_tuple);
    if (c->retired || !s->started) {
      co_return;
    }
    if (!ec && !results.empty()) {
      std::vector<asio::ip::tcp::endpoint> now;
      for (const auto& r : results) {
        now.push_back(r.endpoint());
      }
      if (now != last) {
        std::string list;
        for (const auto& a : now) {
          list += (list.empty() ? "" : ", ") + a.address().to_string();
        }
        log_event(s->shared, spdlog::level::info,
                  cl.name + "/" + counters.name() + " resolves to " + list);
        last = now;
      }
      counters.addresses->set(std::move(now));
      counters.series.resolved->Increment();
    } else {
      counters.series.resolve_failed->Increment();
      log_event(s->shared, spdlog::level::warn,
                cl.name + "/" + counters.name() + ": lookup failed (" +
                    (ec ? net::normalized(ec).message() : std::string{"no address"}) +
                    "); keeping the last answer");
    }
    timer->expires_after(cl.resolve_interval);
    const auto [waited] = co_await timer->async_wait(use_tuple);
    if (waited || c->retired || !s->started) {
      co_return;
    }
  }
}

} // namespace tether::proxy::detail
