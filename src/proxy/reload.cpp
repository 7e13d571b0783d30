// Hot reload: a config, validated whole, becomes a new generation that every worker swaps in at
// once. What did not change keeps its state; what did is retired and closes when nothing uses it.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>

#include <asio/co_spawn.hpp>
#include <asio/post.hpp>

#include "tether/core/detached.hpp"

#include "server_impl.hpp"
#include "session.hpp"

namespace tether::proxy {

using namespace detail;

namespace detail {

std::string config_hash(const config& c) {
  // FNV-1a (64 bits) of the config as /config shows it: the same settings, the same hash, in
  // every tether of a fleet. Not a digest against tampering, a name for a version.
  std::uint64_t h = 14695981039346656037ULL;
  for (const char ch : to_json(c)) {
    h ^= static_cast<unsigned char>(ch);
    h *= 1099511628211ULL;
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

std::string cluster_fingerprint(const cluster_config& c) {
  std::string out = to_json(c);
  if (c.tls) {
    // A certificate, key or CA replaced on disk under the same name (a rotation) is a change:
    // the cluster is built again and reads the new files.
    for (const auto* path : {&c.tls->ca_file, &c.tls->cert_file, &c.tls->key_file}) {
      std::error_code ec;
      const auto size = std::filesystem::file_size(*path, ec);
      const auto written = std::filesystem::last_write_time(*path, ec);
      out += "\n" + *path + " " + std::to_string(ec ? 0 : size) + " " +
             std::to_string(ec ? 0 : written.time_since_epoch().count());
    }
  }
  return out;
}

std::string settings_fingerprint(const cluster_config& c) {
  auto settings = c;
  settings.endpoints.clear();
  return cluster_fingerprint(settings);
}

std::vector<std::shared_ptr<tls::client_context>>
make_client_contexts(const config& next, const std::vector<std::shared_ptr<proxy_cluster>>& kept,
                     const std::vector<std::shared_ptr<proxy_cluster>>& from) {
  // Made before anything changes: a certificate file that went bad since the config was
  // checked fails the reload, not half of it.
  std::vector<std::shared_ptr<tls::client_context>> contexts;
  for (std::size_t i = 0; i < next.clusters.size(); ++i) {
    const auto& cl = next.clusters[i];
    contexts.push_back(
        !kept[i] && !from[i] && cl.tls ? std::make_shared<tls::client_context>(*cl.tls) : nullptr);
  }
  return contexts;
}

} // namespace detail

namespace {

// What a reload does not change: the number of workers, the admin listener and the logs. Named
// when they differ, so the user knows an upgrade (--take-over) or a restart is needed.
std::string fixed_parts_changed(const config& running, const config& next) {
  const auto only = [](const config& c, auto keep) {
    config part;
    keep(part, c);
    return to_json(part);
  };
  std::string changed;
  const auto check = [&](const char* what, auto keep) {
    if (only(running, keep) != only(next, keep)) {
      changed += changed.empty() ? what : std::string{", "} + what;
    }
  };
  check("workers", [](config& to, const config& from) { to.workers = from.workers; });
  check("admin", [](config& to, const config& from) { to.admin = from.admin; });
  check("log", [](config& to, const config& from) { to.log = from.log; });
  if (changed.empty()) {
    return {};
  }
  return changed + " changed: a reload applies listeners, routes, clusters, downstream and "
                   "drain_timeout; `tether proxy --take-over` (or a restart) changes the rest";
}

// Whether listener `next` can be running one `running` (whose socket got `port`): the same
// address (as an address: "::" is "0::0") and the same port, or the one a running port 0 got.
// Such a listener keeps its sockets and their queued connections, under its new name if it has
// one; any other is bound anew.
bool same_socket(const listener_config& running, std::uint16_t port, const listener_config& next) {
  std::error_code a;
  std::error_code b;
  const auto ours = asio::ip::make_address(running.address, a);
  const auto theirs = asio::ip::make_address(next.address, b);
  return !a && !b && ours == theirs && (next.port == running.port || next.port == port);
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// The new name of running listener `name`, or null when it keeps its name.
const std::string* renamed(const std::vector<std::pair<std::string, std::string>>& renames,
                           const std::string& name) {
  for (const auto& [from, to] : renames) {
    if (from == name) {
      return &to;
    }
  }
  return nullptr;
}

// Per cluster of `next`, the running one of its name: whole when its settings are the same
// (`kept`), or as the predecessor it takes over from when only its endpoints changed (`from`).
struct running_clusters {
  std::vector<std::shared_ptr<proxy_cluster>> kept;
  std::vector<std::shared_ptr<proxy_cluster>> from;
};

running_clusters match_clusters(const config& next, const generation& running) {
  running_clusters out;
  out.kept.resize(next.clusters.size());
  out.from.resize(next.clusters.size());
  if (!(next.downstream.limits == running.cfg.downstream.limits)) {
    // The parser limits apply to upstream responses too: every cluster is built anew.
    return out;
  }
  for (std::size_t i = 0; i < next.clusters.size(); ++i) {
    const auto& cl = next.clusters[i];
    const auto fingerprint = cluster_fingerprint(cl);
    const auto settings = settings_fingerprint(cl);
    for (const auto& old : running.clusters) {
      if (old->cfg.name != cl.name) {
        continue;
      }
      if (old->fingerprint == fingerprint) {
        out.kept[i] = old;
      } else if (old->settings == settings) {
        out.from[i] = old;
      }
      break;
    }
  }
  return out;
}

asio::awaitable<void> close_pool(std::shared_ptr<upstream_pool> p) {
  co_await p->async_close();
}

asio::awaitable<void> close_client(std::shared_ptr<http::client> client) {
  co_await client->async_close();
}

} // namespace

void server::impl::retire(proxy_cluster& c) {
  c.retired = true;
  c.draining = clusters_draining;
  c.draining->fetch_add(1, std::memory_order_relaxed);
  c.timers.clear(); // its tasks' waits end (operation_aborted), and the tasks with them
  if (c.checker) {
    asio::co_spawn(admin_io, close_client(std::move(c.checker)),
                   report_exceptions{"closing a retired cluster's health checks"});
  }
  // Its successor (the same name: new settings, or new endpoints) registers the same gauges.
  for (auto& e : c.endpoints) {
    for (auto& o : e->observers) {
      o->forget_gauges();
    }
  }
  c.callbacks.clear();
  c.upstream->series.gauges = {};
}

std::vector<std::vector<std::shared_ptr<upstream_pool>>>
server::impl::pools_left(const generation& previous, const generation& next) const {
  std::vector<std::vector<std::shared_ptr<upstream_pool>>> left(workers.size());
  const auto holds = [](const generation& g, const std::shared_ptr<endpoint_state>& e) {
    return std::any_of(g.clusters.begin(), g.clusters.end(), [&e](const auto& c) {
      return std::find(c->endpoints.begin(), c->endpoints.end(), e) != c->endpoints.end();
    });
  };
  for (const auto& c : previous.clusters) {
    for (const auto& e : c->endpoints) {
      if (holds(next, e)) {
        continue;
      }
      for (std::size_t w = 0; w < left.size() && w < e->host->pools.size(); ++w) {
        left[w].push_back(e->host->pools[w]);
      }
    }
  }
  return left;
}

void server::impl::close_pools(std::vector<std::shared_ptr<upstream_pool>> pools) {
  if (!workers_running) {
    return; // destroyed here, before the io_contexts they were made on
  }
  for (auto& w : workers) {
    if (w->id < pools.size()) {
      asio::co_spawn(w->io, close_pool(std::move(pools[w->id])),
                     report_exceptions{"closing the pools of an endpoint no cluster holds"});
    }
  }
}

std::string server::impl::reload(config next) {
  const auto refuse = [this](std::string why) {
    reload_results[1]->Increment();
    log_event(shared, spdlog::level::err, "reload refused, the running config stays: " + why);
    return why;
  };
  if (!started) {
    return refuse("the proxy is not running");
  }
  if (handed_over || handing_over || shared.draining) {
    return refuse(handing_over ? "a take-over of this tether's listeners is under way"
                               : "this tether is draining");
  }
  if (auto why = fixed_parts_changed(shared.cfg, next); !why.empty()) {
    return refuse(std::move(why));
  }
  const auto previous = shared.current;
  // Everything that can fail comes first, before anything running changes: the new listeners'
  // sockets (a port taken refuses the reload), the TLS contexts, the clusters with their
  // counters and pools (their gauges wait, see watch()).
  const auto& running = previous->cfg.listeners;
  std::vector<std::uint16_t> running_ports;
  {
    const std::lock_guard lock{shared.current_lock};
    running_ports = ports;
  }
  std::vector<std::uint16_t> next_ports(next.listeners.size());
  std::vector<bool> kept_listener(running.size(), false);
  std::vector<std::vector<net::owned_fd>> opened(next.listeners.size());
  auto renames = std::make_shared<std::vector<std::pair<std::string, std::string>>>();
  // Each listener of `next` takes the running one of its name on the same socket, else one of
  // another name on the same socket (renamed), else sockets of its own.
  std::vector<bool> matched(next.listeners.size(), false);
  for (const bool by_name : {true, false}) {
    for (std::size_t i = 0; i < next.listeners.size(); ++i) {
      const auto& l = next.listeners[i];
      for (std::size_t j = 0; j < running.size() && !matched[i]; ++j) {
        if (!kept_listener[j] && (!by_name || running[j].name == l.name) &&
            same_socket(running[j], running_ports[j], l)) {
          matched[i] = kept_listener[j] = true;
          next_ports[i] = running_ports[j];
          if (running[j].name != l.name) {
            renames->emplace_back(running[j].name, l.name);
          }
        }
      }
    }
  }
  for (std::size_t i = 0; i < next.listeners.size(); ++i) {
    if (!matched[i]) {
      if (const auto ec = listener_sockets(next.listeners[i], opened[i], next_ports[i])) {
        auto why = bind_failure(next.listeners[i], ec);
        for (std::size_t j = 0; j < running.size(); ++j) {
          if (!kept_listener[j] && ec == std::errc::address_in_use &&
              same_socket(running[j], running_ports[j], next.listeners[i])) {
            why = "cannot listen on " + next.listeners[i].address + ":" +
                  std::to_string(next.listeners[i].port) + " (listener '" + next.listeners[i].name +
                  "'): listener '" + running[j].name +
                  "' of this tether listens there, and its sockets can only be kept as they "
                  "are (the same address and port)";
          }
        }
        return refuse(why);
      }
    }
  }
  std::shared_ptr<const generation> g;
  std::vector<std::shared_ptr<proxy_cluster>> from; // per cluster of g: its predecessor, if any
  try {
    auto running_ones = match_clusters(next, *previous);
    from = running_ones.from;
    auto contexts = make_client_contexts(next, running_ones.kept, running_ones.from);
    g = build_generation(std::move(next), std::move(running_ones.kept),
                         std::move(running_ones.from), std::move(contexts));
  } catch (const std::exception& e) {
    return refuse(e.what()); // what was built goes with `g`: its pools close on their workers
  }
  // Nothing can fail past the new sockets' listen: until now they queued no connection.
  for (std::size_t i = 0; i < opened.size(); ++i) {
    if (const auto ec = listen_all(opened[i])) {
      return refuse(bind_failure(g->cfg.listeners[i], ec));
    }
  }
  const auto in = [](const generation& gen, const std::shared_ptr<proxy_cluster>& c) {
    return std::find(gen.clusters.begin(), gen.clusters.end(), c) != gen.clusters.end();
  };
  // Clusters that take over from a predecessor: the endpoints it had and they do not leave
  // the outlier detection they share, and theirs join it.
  std::size_t took_over = 0;
  for (std::size_t i = 0; i < from.size(); ++i) {
    if (from[i]) {
      g->clusters[i]->upstream->take_over(*from[i]->upstream);
      ++took_over;
    }
  }
  std::size_t carried = 0;
  std::size_t retired = 0;
  for (const auto& old : previous->clusters) {
    if (in(*g, old)) {
      ++carried;
    } else {
      retire(*old);
      ++retired;
    }
  }
  for (const auto& c : g->clusters) {
    if (in(*previous, c)) {
      continue;
    }
    watch(*c);
    for (auto& e : c->endpoints) {
      e->start(); // those of the endpoints it took over run already
    }
    try {
      start_cluster_tasks(c);
    } catch (const std::exception& e) {
      log_event(shared, spdlog::level::err,
                "cluster '" + c->cfg.name + "': its health checks cannot run: " + e.what());
    }
  }
  // Listeners closed: their sockets (and the copies kept for an upgrade) close, their
  // connections end as at a drain. Those opened: spread over the workers, which close first.
  auto closed = std::make_shared<std::vector<std::string>>();
  for (std::size_t j = 0; j < running.size(); ++j) {
    if (!kept_listener[j]) {
      closed->push_back(running[j].name);
    }
  }
  std::erase_if(passable, [&closed](const passed_socket& p) {
    return p.kind == "listener" && contains(*closed, p.name);
  });
  for (auto& p : passable) {
    if (const auto* to = renamed(*renames, p.name); to != nullptr && p.kind == "listener") {
      p.name = *to;
    }
  }
  auto leaving = pools_left(*previous, *g);
  std::vector<handed_sockets> per_worker(workers.size());
  std::size_t opened_count = 0;
  for (std::size_t i = 0; i < opened.size(); ++i) {
    if (!opened[i].empty()) {
      adopt_sockets(g->cfg.listeners[i], opened[i], next_ports[i], per_worker);
      ++opened_count;
    }
  }
  publish(g, &next_ports);
  for (auto& w : workers) {
    auto handed = std::make_shared<handed_sockets>(std::move(per_worker[w->id]));
    auto retiring =
        std::make_shared<std::vector<std::shared_ptr<upstream_pool>>>(std::move(leaving[w->id]));
    asio::post(w->io, [this, raw = w.get(), g, closed, renames, handed, retiring] {
      // The endpoints no cluster holds now drain (requests in flight finish, nothing is kept
      // idle), before the old generation can go with the last request that holds it: its
      // pools would close, not drain, and this swap may be what lets go of it.
      const auto old = std::exchange(raw->gen, g);
      for (const auto& p : *retiring) {
        p->retire();
      }
      // (An acceptor closed goes when its accept loop, which looks at it once more, ends.)
      for (auto& a : raw->acceptors) {
        if (contains(*closed, a.listener)) {
          net::close_listener(*a.acceptor);
        } else if (const auto* to = renamed(*renames, a.listener)) {
          a.listener = *to;
        }
      }
      raw->adopting = std::move(*handed);
      start_accepting(raw);
      for (auto* s : raw->sessions) {
        if (contains(*closed, s->listener())) {
          s->leave();
        } else if (const auto* to = renamed(*renames, s->listener())) {
          s->relabel(*to);
        }
        s->adopt_if_idle();
      }
    });
  }
  reload_results[0]->Increment();
  log_event(shared, spdlog::level::info,
            "reloaded: config " + g->hash + ", " + std::to_string(g->clusters.size() - carried) +
                " clusters built (" + std::to_string(took_over) +
                " keeping their unchanged endpoints), " + std::to_string(carried) +
                " kept as they were, " + std::to_string(retired) +
                " retired (closed when their requests are done); " + std::to_string(opened_count) +
                " listeners opened, " + std::to_string(closed->size()) + " closed, " +
                std::to_string(renames->size()) + " renamed");
  return {};
}

void server::impl::publish(const std::shared_ptr<const generation>& g,
                           const std::vector<std::uint16_t>* listener_ports) {
  {
    const std::lock_guard lock{shared.current_lock}; // the config and its ports, at once
    shared.current = g;
    if (listener_ports != nullptr) {
      ports = *listener_ports;
    }
  }
  watch_listeners(*g);
  loaded_at =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  config_info.reset(); // the last hash's series, before the new one
  config_info = shared.registry.callback(
      "tether_proxy_config_info", "The running config: 1, with its hash as a label",
      metrics::metric_kind::gauge, {{"hash", g->hash}}, [] { return 1.0; });
}

std::vector<std::string> server::impl::reload_from_source() {
  if (!source) {
    return {"nothing to reload from: this proxy was given its config, not where to read it"};
  }
  auto loaded = source();
  if (!loaded.value) {
    reload_results[1]->Increment();
    for (const auto& e : loaded.errors) {
      log_event(shared, spdlog::level::err, "reload refused, the running config stays: " + e);
    }
    return std::move(loaded.errors);
  }
  auto why = reload(std::move(*loaded.value));
  return why.empty() ? std::vector<std::string>{} : std::vector<std::string>{std::move(why)};
}

namespace {

// Runs `f` on the admin thread (where reloads run) and returns what it returned.
template <typename F>
std::vector<std::string> on_admin_thread(server::impl& s, F f) {
  if (s.admin_io.get_executor().running_in_this_thread()) {
    return f(); // (stop() is not running: it waits for this thread's work)
  }
  const std::lock_guard not_stopping{s.lifecycle};
  if (!s.started) {
    return {"the proxy is not running"};
  }
  auto done = std::make_shared<std::promise<std::vector<std::string>>>();
  auto result = done->get_future();
  asio::post(s.admin_io, [done, f = std::move(f)]() mutable { done->set_value(f()); });
  return result.get();
}

} // namespace

void server::set_config_source(std::function<load_result()> source) {
  impl_->source = std::move(source);
}

std::vector<std::string> server::reload() {
  return on_admin_thread(*impl_, [s = impl_.get()] { return s->reload_from_source(); });
}

std::vector<std::string> server::reload(config next) {
  return on_admin_thread(*impl_, [s = impl_.get(), next = std::move(next)]() mutable {
    auto why = s->reload(std::move(next));
    return why.empty() ? std::vector<std::string>{} : std::vector<std::string>{std::move(why)};
  });
}

} // namespace tether::proxy
