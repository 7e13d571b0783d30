// The seed's retry storm, reproduced against tether proxy: three backends of fixed capacity
// behind the proxy, an open-loop load at a fixed arrival rate, and one backend failing for a
// while. Run once per proxy configuration:
//
//   tether_retry_storm naive|tether [--rate R] [--capacity C] [--duration S] [--fault-at T]
//                      [--fault-for L] [--fault 503|stall] [--csv FILE]
//
// naive:  the gateway of the seed: 3 immediate retries (under 1 ms apart) on 5xx and errors, no
//         budget, no breaker, no threshold on retries.
// tether: the proxy with nothing configured but the endpoints: its defaults.
//
// Everything runs in this process on 127.0.0.1: the backends on one thread, the proxy on one
// worker, the load on one thread (tether's HTTP client with retries off, one request per arrival
// whatever came back before: open loop). Prints one line per second to the CSV file and a JSON
// summary on stdout:
//   amplification   upstream attempts / client requests, during the fault
//   success         client requests answered 200 / requests, over the run and during the fault
//   servable        during the fault: 200s / min(requests, what the healthy backends can serve)
//   healthy_peak    the most requests a healthy backend received in one second / its capacity
//   recovery_s      seconds from the end of the fault until every second after has >= 99 %
//                   success and amplification <= 1.1 (-1: not within the run)
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "tether/http/client.hpp"
#include "tether/http/parser.hpp"
#include "tether/proxy/server.hpp"

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

struct options {
  std::string mode = "tether";
  double rate = 0;    // requests/s; 0: 65 % of the three backends' capacity
  int capacity = 300; // requests/s each backend serves
  int duration = 30;  // seconds of load
  int fault_at = 10;  // when backend 0 starts failing
  int fault_for = 10; // for how long
  bool stall = false; // failing means stalling instead of answering 503
  std::string csv;
};

/// Per-second counters, indexed by the second since the start of the load.
struct series {
  explicit series(int seconds) : v(static_cast<std::size_t>(seconds) + 8) {}
  void add(double at) {
    const auto s = static_cast<std::size_t>(std::max(0.0, at));
    if (s < v.size()) {
      v[s].fetch_add(1, std::memory_order_relaxed);
    }
  }
  [[nodiscard]] long at(int s) const { return v[static_cast<std::size_t>(s)].load(); }
  std::vector<std::atomic<long>> v;
};

/// A backend that serves at most `capacity` requests per second (a token bucket holding 50 ms of
/// them) and answers 503 beyond it, or, while failing, 503 to everything (or nothing: stall).
class backend {
public:
  backend(asio::io_context& io, int capacity, int seconds, const std::atomic<steady::rep>& start)
      : arrivals{seconds}, served{seconds}, refused{seconds},
        acceptor_{io, {asio::ip::make_address("127.0.0.1"), 0}}, capacity_{capacity}, start_{
                                                                                          start} {
    tokens_ = burst();
    refilled_ = steady::now();
    asio::co_spawn(io, accept_loop(), asio::detached);
  }
  [[nodiscard]] std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

  std::atomic<bool> failing{false};
  std::atomic<bool> stall{false};
  series arrivals;
  series served;
  series refused;

private:
  [[nodiscard]] double burst() const { return capacity_ / 20.0; }

  bool take_token() {
    const auto now = steady::now();
    tokens_ = std::min(burst(), tokens_ + std::chrono::duration<double>(now - refilled_).count() *
                                              capacity_);
    refilled_ = now;
    if (tokens_ >= 1.0) {
      tokens_ -= 1.0;
      return true;
    }
    return false;
  }

  double since_start() const {
    const steady::time_point origin{steady::duration{start_.load(std::memory_order_relaxed)}};
    return std::chrono::duration<double>(steady::now() - origin).count();
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
      if (ec) {
        co_return;
      }
      socket.set_option(asio::ip::tcp::no_delay{true});
      asio::co_spawn(acceptor_.get_executor(), serve(std::move(socket)), asio::detached);
    }
  }

  class counter final : public tether::http::parser_handler {
  public:
    void on_head(const tether::http::message_head&) override {}
    void on_body(std::string_view) override {}
    void on_message_complete() override { ++complete; }
    int complete = 0;
  };

  asio::awaitable<void> serve(asio::ip::tcp::socket socket) {
    tether::http::parser parser{tether::http::parser::kind::request};
    counter requests;
    std::array<char, 4096> buffer{};
    std::string out;
    for (;;) {
      auto [ec, n] = co_await socket.async_read_some(asio::buffer(buffer), use_tuple);
      if (ec) {
        co_return;
      }
      parser.feed({buffer.data(), n}, requests);
      if (parser.error()) {
        co_return;
      }
      out.clear();
      for (; requests.complete > 0; --requests.complete) {
        arrivals.add(since_start());
        if (failing.load()) {
          if (stall.load()) {
            asio::steady_timer wait{socket.get_executor(), 1h};
            co_await wait.async_wait(use_tuple); // ends when the proxy closes the connection
            co_return;
          }
          refused.add(since_start());
          out += "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 8\r\n\r\nfailing\n";
        } else if (take_token()) {
          served.add(since_start());
          out += "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
        } else {
          refused.add(since_start());
          out += "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 14\r\n\r\nover capacity\n";
        }
      }
      if (!out.empty()) {
        auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(out), use_tuple);
        if (wec) {
          co_return;
        }
      }
    }
  }

  asio::ip::tcp::acceptor acceptor_;
  int capacity_;
  const std::atomic<steady::rep>& start_;
  double tokens_ = 0;
  steady::time_point refilled_;
};

std::string proxy_yaml(const options& o, const std::vector<std::uint16_t>& ports) {
  std::string endpoints;
  for (const auto p : ports) {
    endpoints +=
        (endpoints.empty() ? "" : ", ") + std::string{"\"127.0.0.1:"} + std::to_string(p) + "\"";
  }
  std::string yaml = "workers: 1\n"
                     "listeners: [{name: main, address: 127.0.0.1, port: 0}]\n"
                     "admin: {address: 127.0.0.1, port: 0}\n"
                     "log: {level: warn}\n"
                     "routes: [{path_prefix: /, cluster: api}]\n"
                     "clusters:\n"
                     "  - name: api\n"
                     "    endpoints: [" +
                     endpoints + "]\n" + "    request_timeout: 2s\n";
  if (o.mode == "naive") {
    yaml += "    retry: {retry_on: [5xx, connect-failure, reset], num_retries: 3, "
            "backoff: {base: 1ms, max: 1ms}}\n"
            "    retry_budget: off\n"
            "    breaker: off\n"
            "    circuit_breakers: {max_retries: 1000000, max_requests: 1000000, "
            "max_pending_requests: 1000000}\n";
  }
  return yaml;
}

int run(const options& o) {
  const double rate = o.rate > 0 ? o.rate : 0.65 * 3 * o.capacity;
  const int seconds = o.duration;
  // The backends count by the second since the load's start (set just before it begins).
  std::atomic<steady::rep> origin{steady::now().time_since_epoch().count()};
  asio::io_context backend_io{1};
  std::vector<std::unique_ptr<backend>> backends;
  for (int i = 0; i < 3; ++i) {
    backends.push_back(std::make_unique<backend>(backend_io, o.capacity, seconds, origin));
  }
  backends[0]->stall = o.stall;
  auto backend_work = asio::make_work_guard(backend_io);
  std::thread backend_thread{[&] { backend_io.run(); }};

  // The proxy.
  std::vector<std::uint16_t> ports;
  for (const auto& b : backends) {
    ports.push_back(b->port());
  }
  auto loaded = tether::proxy::load_config(proxy_yaml(o, ports), o.mode + ".yaml");
  if (!loaded.value) {
    for (const auto& e : loaded.errors) {
      std::cerr << e << '\n';
    }
    return 2;
  }
  tether::proxy::server proxy{*loaded.value};
  if (const auto ec = proxy.start()) {
    std::cerr << "proxy: " << ec.message() << '\n';
    return 1;
  }
  const auto proxy_port = proxy.listener_ports().at(0);

  // The load: open loop, one request per arrival, no retries, 2 s to answer.
  asio::io_context load_io{1};
  tether::http::client_options co;
  co.pool.max_size = 4096;
  co.pool.acquire_timeout = 2s;
  co.retry.max_attempts = 1;
  co.retry.overall_timeout = 2s;
  co.budget.reset();
  co.breaker.reset();
  auto client = tether::http::client::create(load_io.get_executor(), co);
  series offered{seconds};
  series ok{seconds};
  long outstanding = 0; // on the load thread only
  const auto start = steady::now() + 100ms;
  origin = start.time_since_epoch().count();
  const auto total = static_cast<long>(rate * seconds);
  bool faulted = false;
  bool healed = false;
  auto one = [&](int second) -> asio::awaitable<void> {
    tether::http::request r;
    r.host = "127.0.0.1";
    r.port = proxy_port;
    r.target = "/";
    const auto result = co_await client->async_request(std::move(r));
    if (!result.error && result.response.status == 200) {
      ok.add(second);
    }
    --outstanding;
  };
  auto generator = [&]() -> asio::awaitable<void> {
    asio::steady_timer timer{load_io};
    for (long i = 0; i < total; ++i) {
      const auto due = start + std::chrono::duration_cast<steady::duration>(
                                   std::chrono::duration<double>(static_cast<double>(i) / rate));
      timer.expires_at(due);
      co_await timer.async_wait(use_tuple);
      const double at = std::chrono::duration<double>(steady::now() - start).count();
      if (!faulted && at >= o.fault_at) {
        faulted = true;
        backends[0]->failing = true;
      }
      if (!healed && at >= o.fault_at + o.fault_for) {
        healed = true;
        backends[0]->failing = false;
      }
      const int second = static_cast<int>(static_cast<double>(i) / rate);
      offered.add(second);
      ++outstanding;
      asio::co_spawn(load_io, one(second), asio::detached);
    }
    // Every request ends within its 2 s; then the client closes.
    const auto give_up = steady::now() + 5s;
    while (outstanding > 0 && steady::now() < give_up) {
      timer.expires_after(10ms);
      co_await timer.async_wait(use_tuple);
    }
    co_await client->async_close();
  };
  asio::co_spawn(load_io, generator(), asio::detached);
  load_io.run();
  proxy.stop();
  backend_work.reset();
  backend_io.stop();
  backend_thread.join();

  // Per second, and the summary.
  std::ofstream csv;
  if (!o.csv.empty()) {
    csv.open(o.csv);
    csv << "second,offered,ok,attempts,backend0,backend1,backend2,refused\n";
  }
  const int fault_end = o.fault_at + o.fault_for;
  long fault_offered = 0;
  long fault_attempts = 0;
  long fault_ok = 0;
  double fault_servable = 0;
  long all_offered = 0;
  long all_ok = 0;
  double healthy_peak = 0;
  std::vector<bool> good(static_cast<std::size_t>(seconds), false);
  for (int s = 0; s < seconds; ++s) {
    const long off = offered.at(s);
    const long k = ok.at(s);
    long attempts = 0;
    long refused = 0;
    for (const auto& b : backends) {
      attempts += b->arrivals.at(s);
      refused += b->refused.at(s);
    }
    for (std::size_t b = 1; b < backends.size(); ++b) {
      healthy_peak =
          std::max(healthy_peak, static_cast<double>(backends[b]->arrivals.at(s)) / o.capacity);
    }
    if (s >= o.fault_at && s < fault_end) {
      fault_offered += off;
      fault_attempts += attempts;
      fault_ok += k;
      fault_servable += std::min<double>(static_cast<double>(off), 2.0 * o.capacity);
    }
    all_offered += off;
    all_ok += k;
    good[static_cast<std::size_t>(s)] =
        off > 0 && static_cast<double>(k) >= 0.99 * static_cast<double>(off) &&
        static_cast<double>(attempts) <= 1.1 * static_cast<double>(off);
    if (csv) {
      csv << s << ',' << off << ',' << k << ',' << attempts << ',' << backends[0]->arrivals.at(s)
          << ',' << backends[1]->arrivals.at(s) << ',' << backends[2]->arrivals.at(s) << ','
          << refused << '\n';
    }
  }
  int recovery = -1;
  for (int s = seconds - 1; s >= fault_end; --s) {
    if (!good[static_cast<std::size_t>(s)]) {
      recovery = s + 1 < seconds ? s + 1 - fault_end : -1;
      break;
    }
    recovery = s - fault_end;
  }
  const auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  std::printf("{\"mode\":\"%s\",\"fault\":\"%s\",\"rate\":%.0f,\"capacity\":%d,"
              "\"amplification\":%.3f,\"success\":%.4f,\"fault_success\":%.4f,"
              "\"servable\":%.4f,\"healthy_peak\":%.3f,\"recovery_s\":%d}\n",
              o.mode.c_str(), o.stall ? "stall" : "503", rate, o.capacity,
              ratio(static_cast<double>(fault_attempts), static_cast<double>(fault_offered)),
              ratio(static_cast<double>(all_ok), static_cast<double>(all_offered)),
              ratio(static_cast<double>(fault_ok), static_cast<double>(fault_offered)),
              std::min(1.0, ratio(static_cast<double>(fault_ok), fault_servable)), healthy_peak,
              recovery);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  if (argc < 2 || (std::strcmp(argv[1], "naive") != 0 && std::strcmp(argv[1], "tether") != 0)) {
    std::cerr << "usage: tether_retry_storm naive|tether [--rate R] [--capacity C] [--duration S]"
                 " [--fault-at T] [--fault-for L] [--fault 503|stall] [--csv FILE]\n";
    return 2;
  }
  o.mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const std::string v = argv[i + 1];
    if (k == "--rate") {
      o.rate = std::stod(v);
    } else if (k == "--capacity") {
      o.capacity = std::stoi(v);
    } else if (k == "--duration") {
      o.duration = std::stoi(v);
    } else if (k == "--fault-at") {
      o.fault_at = std::stoi(v);
    } else if (k == "--fault-for") {
      o.fault_for = std::stoi(v);
    } else if (k == "--fault") {
      o.stall = v == "stall";
    } else if (k == "--csv") {
      o.csv = v;
    } else {
      std::cerr << "unknown option " << k << '\n';
      return 2;
    }
  }
  return run(o);
}
