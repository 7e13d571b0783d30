#include "chaos_command.hpp"

#include <csignal>
#include <fstream>
#include <functional>
#include <ostream>
#include <sstream>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>

#include "tether/chaos/api.hpp"
#include "tether/core/random.hpp"
#include "tether/http/server.hpp"

#include "signals.hpp"

namespace tether::app {

int run_chaos(const chaos_command_options& options, std::ostream& out, std::ostream& err) {
  std::signal(SIGPIPE, SIG_IGN);
  asio::io_context io{1};
  chaos::api chaos{io.get_executor(), options.seed.value_or(default_random::entropy_seed())};
  if (!options.config_file.empty()) {
    std::ifstream in{options.config_file};
    if (!in) {
      err << "tether chaos: cannot read config " << options.config_file << '\n';
      return 2;
    }
    std::stringstream text;
    text << in.rdbuf();
    if (const auto e = chaos.populate(text.str())) {
      err << "tether chaos: config " << options.config_file << ": " << e->message << '\n';
      chaos.stop_all();
      return 2;
    }
  }
  auto server = http::small_server::create(
      io.get_executor(), [&chaos](const http::server_request& r) { return chaos.handle(r); });
  if (const auto ec = server->listen(options.host, options.port)) {
    err << "tether chaos: cannot listen on " << options.host << ':' << options.port << ": "
        << ec.message() << '\n';
    return 1;
  }
  out << "tether chaos: API on http://" << options.host << ':' << server->port() << " (Toxiproxy "
      << chaos::api_version << " compatible)" << std::endl;
  // Every signal a user may send is handled here: none ends the process without its stop.
  asio::signal_set signals{io, SIGINT, SIGTERM, SIGQUIT};
  signals.add(SIGHUP);
  signals.add(SIGUSR1);
  signals.add(SIGUSR2);
  std::function<void(std::error_code, int)> on_signal = [&](std::error_code ec, int received) {
    if (ec) {
      return;
    }
    if (received == SIGHUP || received == SIGUSR1 || received == SIGUSR2) {
      out << "tether chaos: " << signal_name(received) << " ignored" << std::endl;
      signals.async_wait(on_signal);
      return;
    }
    server->stop();
    chaos.stop_all();
    io.stop();
  };
  signals.async_wait(on_signal);
  io.run();
  out << "tether chaos: stopped" << std::endl;
  return 0;
}

} // namespace tether::app
