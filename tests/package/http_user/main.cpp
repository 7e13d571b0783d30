// A tether user's program: a small server and a client, both from the installed package, one
// request between them on loopback. Prints the status and body it got.
#include <cstdio>
#include <thread>

#include <asio/io_context.hpp>
#include <asio/executor_work_guard.hpp>

#include "tether/http/client.hpp"
#include "tether/http/server.hpp"

int main() {
  asio::io_context io{1};
  auto work = asio::make_work_guard(io);
  auto server = tether::http::small_server::create(
      io.get_executor(), [](const tether::http::server_request&) {
        tether::http::server_response r;
        r.content_type = "text/plain";
        r.body = "hello from an installed tether";
        return r;
      });
  if (const auto ec = server->listen("127.0.0.1", 0)) {
    std::fprintf(stderr, "listen: %s\n", ec.message().c_str());
    return 1;
  }
  std::thread runner{[&io] { io.run(); }};
  auto client = tether::http::client::create(io.get_executor());
  const auto url = "http://127.0.0.1:" + std::to_string(server->port()) + "/";
  const auto request = tether::http::request::to("GET", url);
  const auto result = client->send(request);
  std::printf("%d %s\n", result.response.status, result.response.body.c_str());
  asio::post(io, [&] { server->stop(); });
  work.reset();
  io.stop();
  runner.join();
  return result.error || result.response.status != 200 ? 1 : 0;
}
