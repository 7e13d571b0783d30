// tether's HTTP client against wrk, on the same nginx in the same run: requests per second over
// kept-alive connections, one load thread each, the same number of connections, the same
// duration. nginx (Debian's, one worker) is started on loopback by the program and stopped at
// the end.
//
//   tether_http_client_bench [connections=16] [seconds=5] [target=/hello]
//
// wrk is the reference: a C load generator that does nothing but write a canned request and
// count responses. The client does everything a library user's request does (pool acquire,
// breaker, budget, retry state, parsing into an owned response), so the ratio is the cost of
// those.
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/steady_timer.hpp>

#include "nginx_server.hpp"
#include "tether/http/client.hpp"

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

struct load_result {
  std::uint64_t ok = 0;
  std::uint64_t failed = 0;
  std::vector<std::uint32_t> latencies_us;
};

asio::awaitable<void> worker(std::shared_ptr<tether::http::client> client, tether::http::request r,
                             steady::time_point until, load_result* out) {
  while (steady::now() < until) {
    const auto start = steady::now();
    auto result = co_await client->async_request(r);
    const auto done = steady::now();
    const auto took = done - start;
    if (done > until) {
      break;
    }
    if (!result.error && result.response.status == 200) {
      ++out->ok;
      out->latencies_us.push_back(static_cast<std::uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(took).count()));
    } else {
      ++out->failed;
    }
  }
}

asio::awaitable<void> close_client(std::shared_ptr<tether::http::client> client) {
  co_await client->async_close();
}

// CPU time (user + system) of this process, or of its waited-for children, in seconds.
double cpu_seconds(int who) {
  rusage u{};
  ::getrusage(who, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double percentile(std::vector<std::uint32_t>& v, double p) {
  if (v.empty()) {
    return 0;
  }
  const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k] / 1000.0;
}

struct wrk_result {
  double rps = 0;
  double cpu_us_per_request = 0;
  std::string latency_line;
};

wrk_result run_wrk(std::uint16_t port, int connections, int seconds, const std::string& target) {
  const std::string cmd = "wrk -t1 -c" + std::to_string(connections) + " -d" +
                          std::to_string(seconds) +
                          "s --latency http://127.0.0.1:" + std::to_string(port) + target + " 2>&1";
  wrk_result out;
  const double cpu_before = cpu_seconds(RUSAGE_CHILDREN);
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    return out;
  }
  char line[512];
  while (std::fgets(line, sizeof line, p) != nullptr) {
    std::string s{line};
    if (s.rfind("Requests/sec:", 0) == 0) {
      out.rps = std::strtod(s.c_str() + 13, nullptr);
    }
    if (s.find("50%") != std::string::npos || s.find("99%") != std::string::npos) {
      s.erase(s.find_last_not_of(" \n") + 1);
      out.latency_line += s + " ";
    }
  }
  ::pclose(p);
  // wrk is a child of popen's shell, which waits for it: its CPU time is in RUSAGE_CHILDREN.
  const double cpu = cpu_seconds(RUSAGE_CHILDREN) - cpu_before;
  if (out.rps > 0) {
    out.cpu_us_per_request = cpu * 1e6 / (out.rps * seconds);
  }
  return out;
}

} // namespace

int main(int argc, char** argv) {
  const int connections = argc > 1 ? std::atoi(argv[1]) : 16;
  const int seconds = argc > 2 ? std::atoi(argv[2]) : 5;
  const std::string target = argc > 3 ? argv[3] : "/hello";
  if (connections <= 0 || seconds <= 0 || target.empty() || target.front() != '/') {
    std::fprintf(stderr, "usage: %s [connections>0] [seconds>0] [target=/hello]\n", argv[0]);
    return 2;
  }
  tether::testing::nginx_server nginx;
  std::printf("nginx (1 worker) on 127.0.0.1:%u, %d connections, %d s each, GET %s\n", nginx.port(),
              connections, seconds, target.c_str());

  // wrk first, then tether: the same nginx, warmed the same way.
  const auto wrk = run_wrk(nginx.port(), connections, seconds, target);

  asio::io_context io{1};
  tether::http::client_options options;
  options.pool.max_size = static_cast<std::size_t>(connections);
  auto client = tether::http::client::create(io.get_executor(), options);
  auto request = tether::http::request::to(
      "GET", "http://127.0.0.1:" + std::to_string(nginx.port()) + target);
  load_result load;
  const double cpu_before = cpu_seconds(RUSAGE_SELF);
  const auto until = steady::now() + std::chrono::seconds{seconds};
  const auto started = steady::now();
  for (int i = 0; i < connections; ++i) {
    asio::co_spawn(io, worker(client, request, until, &load), asio::detached);
  }
  // Bounded by the deadline; what completes after it is not counted.
  while (steady::now() < until) {
    io.run_for(50ms);
  }
  const double elapsed = std::chrono::duration<double>(until - started).count();
  const double cpu = cpu_seconds(RUSAGE_SELF) - cpu_before;
  asio::co_spawn(io, close_client(client), asio::detached);
  io.run_for(1s);

  const double tether_rps = static_cast<double>(load.ok) / elapsed;
  const double p50 = percentile(load.latencies_us, 0.50);
  const double p99 = percentile(load.latencies_us, 0.99);
  const double tether_cpu_us =
      load.ok > 0 ? cpu * 1e6 / static_cast<double>(load.ok + load.failed) : 0.0;
  std::printf("\n| load generator | requests/s | CPU per request | latency |\n"
              "|---|---:|---:|---|\n");
  std::printf("| wrk -t1 -c%d | %.0f | %.2f us | %s|\n", connections, wrk.rps,
              wrk.cpu_us_per_request, wrk.latency_line.c_str());
  std::printf("| tether http::client (1 thread, pool %d) | %.0f | %.2f us | p50 %.3f ms, p99 "
              "%.3f ms |\n",
              connections, tether_rps, tether_cpu_us, p50, p99);
  std::printf("\ntether / wrk: %.2f; tether requests failed: %llu\n",
              wrk.rps > 0 ? tether_rps / wrk.rps : 0.0,
              static_cast<unsigned long long>(load.failed));
  return load.failed == 0 && wrk.rps > 0 ? 0 : 1;
}
