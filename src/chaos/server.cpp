#include "tether/chaos/server.hpp"

#include <fstream>
#include <ostream>
#include <sstream>

#include <asio/signal_set.hpp>

#include "tether/chaos/api.hpp"
#include "tether/http/server.hpp"

namespace tether::chaos {

int run_server(const server_options& options, std::ostream& out, std::ostream& err) {
  asio::io_context io{1};
  api chaos{io.get_executor(), options.seed.value_or(default_random::entropy_seed())};
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
      << api_version << " compatible)" << std::endl;
  asio::signal_set signals{io, SIGINT, SIGTERM};
  signals.async_wait([&](std::error_code ec, int) {
    if (ec) {
      return;
    }
    server->stop();
    chaos.stop_all();
    io.stop();
  });
  io.run();
  out << "tether chaos: stopped" << std::endl;
  return 0;
}

} // namespace tether::chaos
