// tether proxy as a library object: start binds and starts the workers and the admin thread,
// stop drains and joins them.
#include "tether/proxy/server.hpp"
#include "tether/core/detached.hpp"

#include <algorithm>
#include <future>

#include <fcntl.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <spdlog/sinks/stdout_sinks.h>

#include "access_log.hpp"
#include "server_impl.hpp"
#include "session.hpp"

namespace tether::proxy {

using namespace detail;

net::accept_hooks server::impl::accept_hooks(const asio::ip::tcp::acceptor& acceptor) {
  using detail::log_event;
  std::error_code ec;
  const auto local = acceptor.local_endpoint(ec);
  const std::string where = local.address().to_string() + ":" + std::to_string(local.port());
  net::accept_hooks hooks;
  hooks.on_failure = [s = &shared](net::accept_failure f) {
    s->accept_failures[static_cast<std::size_t>(f)]->Increment();
  };
  hooks.on_pause = [s = &shared, where](std::error_code why) {
    log_event(*s, spdlog::level::err,
              "cannot accept connections on " + where + ": " + why.message() +
                  "; accepting paused (10 ms, doubling up to 1 s) until it works again, "
                  "connections already open are served");
  };
  hooks.on_resume = [s = &shared, where](std::uint64_t failures) {
    log_event(*s, spdlog::level::warn,
              "accepting connections on " + where + " again, after " + std::to_string(failures) +
                  " failed attempts");
  };
  return hooks;
}

namespace {

// Every second, the worker's sessions: a TLS session idle since the round before gives back
// OpenSSL's record buffers (session::release_idle_buffers). Ends with the drain.
void sweep_buffers(worker* w) {
  w->buffer_sweep.expires_after(std::chrono::seconds{1});
  w->buffer_sweep.async_wait([w](std::error_code ec) {
    if (ec || w->shared.draining.load(std::memory_order_relaxed)) {
      return;
    }
    for (auto* s : w->sessions) {
      s->release_idle_buffers();
    }
    sweep_buffers(w);
  });
}

// Where a socket listens (an address of family 0 when it cannot say).
asio::ip::tcp::endpoint local_endpoint_of(int fd) {
  asio::ip::tcp::endpoint local;
  socklen_t size = static_cast<socklen_t>(local.capacity());
  if (::getsockname(fd, local.data(), &size) == 0) {
    local.resize(size);
  }
  return local;
}

// A connection accepted on `acceptor`: served under the worker's generation, by the listener of
// the acceptor's name there (a reload may have moved it in the list, or renamed it).
void serve_accepted(worker* w, const asio::ip::tcp::acceptor* acceptor,
                    asio::ip::tcp::socket socket) {
  const auto on = std::find_if(w->acceptors.begin(), w->acceptors.end(),
                               [acceptor](const auto& a) { return a.acceptor.get() == acceptor; });
  if (on == w->acceptors.end()) {
    return;
  }
  const auto& name = on->listener;
  const auto& listeners = w->gen->cfg.listeners;
  const auto it = std::find_if(listeners.begin(), listeners.end(),
                               [&name](const listener_config& l) { return l.name == name; });
  if (it == listeners.end()) {
    return; // closed by a reload just now: the socket closes unanswered, as a refusal would
  }
  // (serve() builds its session before its first suspension, under this same generation: the
  // index stays right.)
  asio::co_spawn(w->io,
                 serve(w, static_cast<std::size_t>(it - listeners.begin()), std::move(socket)),
                 report_exceptions{"a client connection"});
}

} // namespace

void server::impl::start_accepting(worker* w) {
  // On the worker's thread (or before it runs): the sockets handed to it become acceptors.
  for (auto& [name, fd] : w->adopting) {
    std::error_code ec;
    auto a = std::make_unique<asio::ip::tcp::acceptor>(w->io);
    a->assign(local_endpoint_of(fd.get()).protocol(), fd.get(), ec);
    if (ec) {
      log_event(shared, spdlog::level::err,
                "listener '" + name + "': worker " + std::to_string(w->id) +
                    " cannot accept on its socket: " + ec.message());
      continue; // the others share the port
    }
    (void)fd.release(); // the acceptor's now
    const auto* raw = a.get();
    w->acceptors.push_back(worker::listening{std::move(a), name});
    // Once its loop has ended (closed: a stop, a take-over, a reload), the acceptor goes.
    asio::co_spawn(
        w->io,
        net::accept_loop(
            *w->acceptors.back().acceptor,
            [w, raw](asio::ip::tcp::socket socket) { serve_accepted(w, raw, std::move(socket)); },
            accept_hooks(*raw)),
        [w, raw](const std::exception_ptr& e) {
          report_exceptions{"a listener's accept loop"}(e);
          std::erase_if(w->acceptors, [raw](const auto& l) { return l.acceptor.get() == raw; });
        });
  }
  w->adopting.clear();
}

server::server(config c) : server{std::move(c), coarse_monotonic_clock::instance()} {}

server::server(config c, const clock& resilience_clock)
    : impl_{std::make_unique<impl>(std::move(c), resilience_clock)} {}

server::~server() {
  stop();
}

void server::impl::unbind() {
  for (auto& w : workers) {
    w->adopting.clear();
  }
  passable.clear();
  taken.clear();
  predecessor.reset(); // a take-over that failed: the old process goes on as it was
}

std::string server::impl::bind_failure(const listener_config& l, std::error_code ec) {
  auto why = "cannot listen on " + l.address + ":" + std::to_string(l.port) + " (listener '" +
             l.name + "'): " + ec.message();
  if (ec == std::errc::address_in_use) {
    why += l.reuse_port ? " by a socket that does not share it"
                        : "; another process listens there (a listener's "
                          "`reuse_port: true` shares a port on purpose; `tether proxy "
                          "--take-over` takes a running tether's listeners over)";
  }
  return why;
}

std::error_code server::impl::listener_sockets(const listener_config& l,
                                               std::vector<net::owned_fd>& out,
                                               std::uint16_t& port) {
  // One socket per worker, all on the same address and port (SO_REUSEPORT; the kernel spreads
  // connections across them). A port 0 is resolved by the first bind, which also makes sure no
  // other process listens there unless the listener says to share the port. Sockets taken over
  // from an old process are spread over the workers, and a worker left without one shares one
  // of them (a socket it bound itself would join the port's group at once, and reset the
  // connections queued in it if this start failed later). Bound on a scratch io_context and
  // released, not listening yet (listen_all): each worker adopts its own on its thread.
  out = take_listener(l);
  port = l.port;
  std::error_code ec;
  const auto address = asio::ip::make_address(l.address, ec);
  const auto received = out.size();
  for (std::size_t k = received; received != 0 && k < workers.size() && !ec; ++k) {
    net::owned_fd copy{::fcntl(out[k % received].get(), F_DUPFD_CLOEXEC, 0)};
    if (!copy) {
      ec = {errno, std::system_category()};
    }
    out.push_back(std::move(copy));
  }
  if (received != 0 && !ec) {
    port = local_endpoint_of(out.front().get()).port();
  }
  asio::io_context scratch{1};
  for (std::size_t k = out.size(); k < workers.size() && !ec; ++k) {
    asio::ip::tcp::acceptor a{scratch};
    ec = net::open_listener(
        a, {address, port},
        {.reuse_port = true, .exclusive = k == 0 && !l.reuse_port, .listen = false});
    if (!ec) {
      port = a.local_endpoint().port();
      out.emplace_back(a.release(ec));
    }
  }
  if (ec) {
    out.clear();
  }
  return ec;
}

std::error_code server::impl::listen_all(std::vector<net::owned_fd>& fds) {
  for (const auto& fd : fds) {
    if (const auto ec = net::start_listening(fd.get())) {
      return ec;
    }
  }
  return {};
}

void server::impl::adopt_sockets(const listener_config& l, std::vector<net::owned_fd>& fds,
                                 std::uint16_t port, std::vector<handed_sockets>& per_worker) {
  if (!shared.cfg.admin.upgrade_socket.empty()) {
    for (const auto& fd : fds) {
      remember_passable("listener", l.name, l.address, port, fd.get());
    }
  }
  per_worker.resize(workers.size());
  for (std::size_t k = 0; k < fds.size(); ++k) {
    per_worker[k % workers.size()].emplace_back(l.name, std::move(fds[k]));
  }
}

std::error_code server::impl::bind_listeners() {
  std::vector<std::vector<net::owned_fd>> all;
  std::vector<std::uint16_t> bound;
  for (const auto& l : shared.cfg.listeners) {
    std::uint16_t port = 0;
    std::vector<net::owned_fd> fds;
    if (const auto ec = listener_sockets(l, fds, port)) {
      unbind();
      failure = bind_failure(l, ec);
      return ec;
    }
    all.push_back(std::move(fds));
    bound.push_back(port);
  }
  // Listening only once every listener is bound: a start that fails queues nothing.
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (const auto ec = listen_all(all[i])) {
      unbind();
      failure = bind_failure(shared.cfg.listeners[i], ec);
      return ec;
    }
  }
  std::vector<handed_sockets> per_worker;
  for (std::size_t i = 0; i < all.size(); ++i) {
    adopt_sockets(shared.cfg.listeners[i], all[i], bound[i], per_worker);
  }
  for (std::size_t k = 0; k < per_worker.size(); ++k) {
    workers[k]->adopting = std::move(per_worker[k]); // before their threads run
  }
  const std::lock_guard lock{shared.current_lock};
  ports = std::move(bound);
  return {};
}

std::error_code server::start() {
  return start(start_options{});
}

void server::on_handed_over(std::function<void(int)> f) {
  impl_->handed_over_callback = std::move(f);
}

std::error_code server::start(const start_options& options) {
  auto& s = *impl_;
  auto& cfg = s.shared.cfg;
  // Logs: spdlog, not registered by name (tests run several proxies in one process).
  s.shared.json_logs = cfg.log.format == log_format::json;
  s.shared.log =
      std::make_shared<spdlog::logger>("tether", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  s.shared.log->set_pattern(s.shared.json_logs
                                ? R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","msg":%v})"
                                : "[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  s.shared.log->set_level(
      spdlog::level::from_str(cfg.log.level == "warn" ? "warning" : cfg.log.level));
  if (!cfg.log.access_log.empty()) {
    if (const auto ec = open_access_log(s.shared, cfg.log.access_log)) {
      s.failure = "cannot open the access log " + cfg.log.access_log + ": " + ec.message();
      return ec;
    }
  }
  const std::size_t n =
      cfg.workers != 0 ? cfg.workers : std::max(1U, std::thread::hardware_concurrency());
  s.shared.worker_count = n;
  for (std::size_t i = 0; i < n; ++i) {
    s.workers.push_back(std::make_unique<worker>(s.shared, i));
  }
  try {
    s.register_metrics();
    std::vector<std::shared_ptr<proxy_cluster>> none(cfg.clusters.size());
    auto contexts = make_client_contexts(cfg, none, none);
    s.publish(s.build_generation(cfg, none, none, std::move(contexts)));
    for (const auto& c : s.shared.current->clusters) {
      s.watch(*c);
    }
  } catch (const std::invalid_argument& e) {
    // A TLS file changed or went away since the config was checked.
    s.failure = e.what();
    return make_error_code(std::errc::invalid_argument);
  }
  for (auto& w : s.workers) {
    w->gen = s.shared.current;
  }
  if (options.take_over) {
    if (cfg.admin.upgrade_socket.empty()) {
      s.failure = "a take-over needs admin.upgrade_socket in the config: where the running "
                  "tether passes its listeners";
      return make_error_code(std::errc::invalid_argument);
    }
    if (const auto ec = s.take_over()) {
      s.failure = "cannot take the listeners over from the tether on " + cfg.admin.upgrade_socket +
                  ": " + s.failure;
      return ec;
    }
  }
  if (const auto ec = s.bind_listeners()) {
    return ec;
  }
  s.admin = http::small_server::create(
      s.admin_io.get_executor(),
      [impl = impl_.get()](const http::server_request& r) { return impl->admin_request(r); });
  auto admin_taken = std::find_if(s.taken.begin(), s.taken.end(), [&cfg](const auto& t) {
    return t.matches("admin", "admin", cfg.admin.address, cfg.admin.port);
  });
  if (const auto ec = admin_taken != s.taken.end()
                          ? s.admin->listen_on(admin_taken->fd.release())
                          : s.admin->listen(cfg.admin.address, cfg.admin.port)) {
    s.unbind();
    s.failure = "cannot listen on " + cfg.admin.address + ":" + std::to_string(cfg.admin.port) +
                " (the admin listener): " + ec.message();
    return ec;
  }
  s.taken.clear(); // what this config has no listener for: the old process closes it
  if (!cfg.admin.upgrade_socket.empty()) {
    s.remember_passable("admin", "admin", cfg.admin.address, s.admin->port(),
                        s.admin->native_handle());
    if (!options.take_over) {
      if (const auto ec = s.listen_for_upgrades()) {
        s.unbind();
        s.admin->stop();
        return ec;
      }
    }
  }
  s.workers_running = true;
  for (auto& c : s.shared.current->clusters) {
    for (auto& e : c->endpoints) {
      e->start(); // (each pool's housekeeping begins when its worker runs)
    }
  }
  for (auto& w : s.workers) {
    s.start_accepting(w.get());
    sweep_buffers(w.get()); // TLS sessions' buffers (a reload may add a TLS listener)
    w->work = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(
        w->io.get_executor());
    w->thread = std::thread{[raw = w.get()] { raw->io.run(); }};
  }
  s.admin_work = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(
      s.admin_io.get_executor());
  s.started = true;
  s.start_admin_tasks();
  s.admin_thread = std::thread{[&s] { s.admin_io.run(); }};
  log_event(s.shared, spdlog::level::info,
            "started: " + std::to_string(s.workers.size()) + " workers, " +
                std::to_string(cfg.listeners.size()) + " listeners, admin on port " +
                std::to_string(s.admin->port()));
  if (options.take_over) {
    s.finish_take_over();
  }
  return {};
}

void server::impl::stop_accepting() {
  // Waited for on each worker (workers never wait on other threads): once this returns, no
  // connection is accepted here any more.
  for (auto& w : workers) {
    std::promise<void> done;
    asio::post(w->io, [raw = w.get(), &done] {
      raw->buffer_sweep.cancel();
      for (auto& a : raw->acceptors) {
        net::close_listener(*a.acceptor);
      }
      for (auto* session : raw->sessions) {
        session->wake_if_idle();
      }
      done.set_value();
    });
    done.get_future().wait();
  }
}

void server::stop() {
  auto& s = *impl_;
  const std::lock_guard stopping{s.lifecycle};
  if (!s.started) {
    return;
  }
  s.started = false;
  // A POST /reload on the admin thread may still be swapping it until that thread is joined.
  const auto running = [&s] {
    const std::lock_guard lock{s.shared.current_lock};
    return s.shared.current;
  };
  s.shared.draining = true;
  // No upgrade from now on, and the copies kept to pass on are closed: a socket nobody
  // accepts on would queue connections until the drain ends.
  {
    std::promise<void> done;
    asio::post(s.admin_io, [&s, &done] {
      s.stop_upgrades();
      done.set_value();
    });
    done.get_future().wait();
  }
  s.stop_accepting();
  const auto give_up = steady::now() + running()->cfg.drain_timeout;
  while (s.shared.downstream_active.load() > 0 && steady::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  if (s.shared.downstream_active.load() > 0) {
    // Drain time is over: the sessions left are ended, and their coroutines run to their end
    // before the workers stop (a frame destroyed with its io_context would outlive the worker
    // state it points to). A session waiting on a full pool ends with its acquire timeout.
    for (auto& w : s.workers) {
      asio::post(w->io, [raw = w.get()] {
        for (auto* session : raw->sessions) {
          session->abort();
        }
      });
    }
    clock::duration longest = std::chrono::seconds{1};
    for (const auto& c : running()->cfg.clusters) {
      longest = std::max(longest, c.pool.acquire_timeout + std::chrono::seconds{1});
    }
    const auto hard_stop = steady::now() + longest;
    while (s.shared.downstream_active.load() > 0 && steady::now() < hard_stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }
  }
  for (auto& w : s.workers) {
    w->work.reset();
    w->io.stop();
    w->thread.join();
  }
  s.workers_running = false; // a cluster let go from now on closes at once
  {
    std::promise<void> done;
    asio::post(s.admin_io, [&] {
      s.admin->stop();
      for (auto& t : s.timers) {
        t->cancel();
      }
      for (auto& c : s.shared.current->clusters) {
        for (auto& t : c->timers) {
          t->cancel();
        }
      }
      done.set_value();
    });
    done.get_future().wait();
  }
  s.admin_work.reset();
  s.admin_io.stop();
  s.admin_thread.join();
  // The access log's thread writes out its queue and is joined (its pool's destructor), and
  // only then is the logger dropped: the join orders everything the thread did before it.
  s.shared.access_threads.reset();
  s.shared.access.reset();
  log_event(s.shared, spdlog::level::info, "stopped");
}

const std::string& server::start_failure() const noexcept {
  return impl_->failure;
}

std::vector<std::uint16_t> server::listener_ports() const {
  const std::lock_guard lock{impl_->shared.current_lock}; // a reload may change them
  return impl_->ports;
}
std::uint16_t server::admin_port() const {
  return impl_->admin ? impl_->admin->port() : 0;
}
config server::running_config() const {
  const std::lock_guard lock{impl_->shared.current_lock};
  return impl_->shared.current ? impl_->shared.current->cfg : impl_->shared.cfg;
}
metrics::registry& server::registry() noexcept {
  return impl_->shared.registry;
}

} // namespace tether::proxy
