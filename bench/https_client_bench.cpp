// The seed's argument for pooling, measured over TLS: HTTPS requests through tether's pooled
// client (one handshake per connection, then kept alive) against a new TLS connection per
// request, with a full handshake and with a resumed session. Same nginx (Debian's, one worker,
// TLS 1.3, ECDSA P-256 certificate from support/make_test_ca.sh), same run, rounds interleaved,
// medians reported. nginx closes after each response of /close (keepalive_timeout 0 there), so
// the client must open a connection per request for the last two.
//
//   tether_https_client_bench [concurrency=4] [seconds=3] [rounds=3]
//
// CPU per request is this process's (the client's) user + system time over the requests it
// completed; the server's is not counted.
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

#include "nginx_server.hpp"
#include "test_ca.hpp"
#include "tether/http/client.hpp"

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

struct counts {
  std::uint64_t ok = 0;
  std::uint64_t failed = 0;
};

asio::awaitable<void> load(std::shared_ptr<tether::http::client> client, tether::http::request r,
                           steady::time_point until, counts* out) {
  while (steady::now() < until) {
    auto result = co_await client->async_request(r);
    if (steady::now() > until) {
      break;
    }
    ++(!result.error && result.response.status == 200 ? out->ok : out->failed);
  }
}

asio::awaitable<void> close_client(std::shared_ptr<tether::http::client> client) {
  co_await client->async_close();
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

struct mode {
  const char* name;
  const char* target;
  bool resumption;
};

struct round_result {
  double rps = 0;
  double cpu_us = 0;
  tether::http::client::tls_stats handshakes{};
  std::uint64_t failed = 0;
};

round_result run(const mode& m, std::uint16_t port, const std::string& ca_file, int concurrency,
                 int seconds) {
  asio::io_context io{1};
  tether::http::client_options options;
  options.pool.max_size = static_cast<std::size_t>(concurrency);
  options.tls.ca_file = ca_file;
  options.tls.session_resumption = m.resumption;
  auto client = tether::http::client::create(io.get_executor(), options);
  const auto request =
      tether::http::request::to("GET", "https://localhost:" + std::to_string(port) + m.target);
  counts done;
  const double cpu_before = cpu_seconds();
  const auto started = steady::now();
  const auto until = started + std::chrono::seconds{seconds};
  for (int i = 0; i < concurrency; ++i) {
    asio::co_spawn(io, load(client, request, until, &done), asio::detached);
  }
  while (steady::now() < until) {
    io.run_for(50ms);
  }
  const double cpu = cpu_seconds() - cpu_before;
  round_result out;
  out.rps = static_cast<double>(done.ok) / std::chrono::duration<double>(until - started).count();
  out.cpu_us = done.ok > 0 ? cpu * 1e6 / static_cast<double>(done.ok + done.failed) : 0;
  out.handshakes = client->handshakes();
  out.failed = done.failed;
  asio::co_spawn(io, close_client(client), asio::detached);
  io.run_for(1s);
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
  const int concurrency = argc > 1 ? std::atoi(argv[1]) : 4;
  const int seconds = argc > 2 ? std::atoi(argv[2]) : 3;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
  if (concurrency <= 0 || seconds <= 0 || rounds <= 0) {
    std::fprintf(stderr, "usage: %s [concurrency>0] [seconds>0] [rounds>0]\n", argv[0]);
    return 2;
  }
  const auto& ca = tether::testing::test_ca::get();
  tether::testing::nginx_server nginx{
      "    location = /close { keepalive_timeout 0; return 200 \"hello\\n\"; }\n",
      tether::testing::nginx_server::tls_settings{ca.path("server.pem"), ca.path("server.key")}};
  std::printf("nginx (1 worker, TLS) on 127.0.0.1:%u; %d requests at a time, %d s x %d rounds "
              "per mode, interleaved\n",
              nginx.port(), concurrency, seconds, rounds);
  const std::vector<mode> modes = {{"pooled, kept alive", "/hello", true},
                                   {"new connection, full handshake", "/close", false},
                                   {"new connection, resumed session", "/close", true}};
  std::vector<std::vector<double>> rps(modes.size());
  std::vector<std::vector<double>> cpu(modes.size());
  std::vector<round_result> last(modes.size());
  std::uint64_t failed = 0;
  for (int r = 0; r < rounds; ++r) {
    for (std::size_t i = 0; i < modes.size(); ++i) {
      const auto got = run(modes[i], nginx.port(), ca.path("ca.pem"), concurrency, seconds);
      rps[i].push_back(got.rps);
      cpu[i].push_back(got.cpu_us);
      last[i] = got;
      failed += got.failed;
    }
  }
  std::printf("\n| HTTPS through tether's client | requests/s | client CPU per request | "
              "handshakes in the last round (full / resumed) |\n|---|---:|---:|---|\n");
  for (std::size_t i = 0; i < modes.size(); ++i) {
    std::printf("| %s | %.0f | %.1f us | %llu / %llu |\n", modes[i].name, median(rps[i]),
                median(cpu[i]), static_cast<unsigned long long>(last[i].handshakes.full),
                static_cast<unsigned long long>(last[i].handshakes.resumed));
  }
  const double pooled = median(rps[0]);
  std::printf("\npooled / full handshake per request: %.1fx the requests/s; "
              "pooled / resumed per request: %.1fx; failed requests: %llu\n",
              median(rps[1]) > 0 ? pooled / median(rps[1]) : 0.0,
              median(rps[2]) > 0 ? pooled / median(rps[2]) : 0.0,
              static_cast<unsigned long long>(failed));
  return failed == 0 ? 0 : 1;
}
