#include "proxy_command.hpp"

#include <atomic>
#include <csignal>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include "tether/http/server.hpp"
#include "tether/proxy/server.hpp"

#include "signals.hpp"

namespace tether::app {
namespace {

/// The default config's upstreams: two small HTTP servers that answer every request with who
/// they are, so `tether proxy` with no config shows its round robin at once.
class demo_upstreams {
public:
  demo_upstreams() = default;
  demo_upstreams(const demo_upstreams&) = delete;
  demo_upstreams& operator=(const demo_upstreams&) = delete;

  std::error_code start() {
    for (int i = 0; i < 2; ++i) {
      const std::string name = "demo upstream " + std::to_string(i + 1);
      auto s =
          http::small_server::create(io_.get_executor(), [name](const http::server_request& r) {
            http::server_response out;
            out.content_type = "text/plain";
            out.body = "hello from " + name + ": " + r.method + " " + r.target + "\n";
            return out;
          });
      if (const auto ec = s->listen("127.0.0.1", static_cast<std::uint16_t>(8081 + i))) {
        return ec;
      }
      servers_.push_back(std::move(s));
    }
    thread_ = std::thread{[this] { io_.run(); }};
    return {};
  }

  ~demo_upstreams() {
    if (thread_.joinable()) {
      asio::post(io_, [this] {
        for (auto& s : servers_) {
          s->stop();
        }
      });
      work_.reset();
      io_.stop();
      thread_.join();
    }
  }

private:
  asio::io_context io_{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      io_.get_executor()};
  std::vector<std::shared_ptr<http::small_server>> servers_;
  std::thread thread_;
};

} // namespace

int run_proxy(const proxy::config& c, std::ostream& out, std::ostream& err,
              const proxy_command_options& options) {
  // Every signal a user might send is blocked before any thread starts, so that only the wait
  // below sees them and none ends the process without a drain (the default action of SIGHUP,
  // SIGUSR1 and SIGUSR2 is to terminate). A write to a closed pipe is an error, not a signal.
  sigset_t signals;
  sigemptyset(&signals);
  for (const int s : {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2}) {
    sigaddset(&signals, s);
  }
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<demo_upstreams> demo;
  if (options.demo_upstreams) {
    demo = std::make_unique<demo_upstreams>();
    if (const auto ec = demo->start()) {
      err << "tether proxy: cannot start the demo upstreams on 127.0.0.1:8081-8082: "
          << ec.message() << '\n';
      return 1;
    }
    out << "tether proxy: demo upstreams on 127.0.0.1:8081 and 127.0.0.1:8082\n";
  }
  proxy::server proxy{c};
  if (options.source) {
    proxy.set_config_source(options.source);
  }
  // A newer tether took the listeners over: this one drains as at a SIGTERM (the signal is
  // blocked in every thread, so the wait below takes it).
  std::atomic<int> handed_to{0};
  proxy.on_handed_over([&handed_to](int pid) {
    handed_to = pid;
    ::kill(::getpid(), SIGTERM);
  });
  if (proxy.start({.take_over = options.take_over})) {
    err << "tether proxy: " << proxy.start_failure() << '\n';
    return 1;
  }
  if (options.take_over) {
    out << "tether proxy: took the listeners over from the tether on " << c.admin.upgrade_socket
        << " (the log says whether it drains)\n";
  }
  const auto ports = proxy.listener_ports();
  for (std::size_t i = 0; i < ports.size(); ++i) {
    out << "tether proxy: send requests to http://" << c.listeners[i].address << ':' << ports[i]
        << "/\n";
  }
  out << "tether proxy: metrics on http://" << c.admin.address << ':' << proxy.admin_port()
      << "/metrics (also /ready, /clusters, /config; POST /reload or SIGHUP reloads)\n";
  out << "tether proxy: " << (c.workers != 0 ? c.workers : std::thread::hardware_concurrency())
      << " workers; Ctrl-C or SIGTERM drains and stops" << std::endl;
  int received = 0;
  for (;;) {
    sigwait(&signals, &received);
    if (received == SIGINT || received == SIGTERM || received == SIGQUIT) {
      break;
    }
    if (received == SIGHUP) {
      const auto errors = proxy.reload();
      if (errors.empty()) {
        out << "tether proxy: SIGHUP: configuration reloaded" << std::endl;
      } else {
        err << "tether proxy: SIGHUP: reload refused, the running configuration stays:\n";
        for (const auto& e : errors) {
          err << "  " << e << '\n';
        }
        err.flush();
      }
    } else {
      out << "tether proxy: " << signal_name(received) << " ignored" << std::endl;
    }
  }
  const auto why = handed_to != 0 ? "handed over to pid " + std::to_string(handed_to.load())
                                  : std::string{signal_name(received)};
  out << "tether proxy: " << why << ": draining (up to "
      << std::chrono::duration_cast<std::chrono::milliseconds>(proxy.running_config().drain_timeout)
             .count()
      << " ms)" << std::endl;
  proxy.stop();
  out << "tether proxy: stopped" << std::endl;
  return 0;
}

} // namespace tether::app
