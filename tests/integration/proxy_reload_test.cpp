// Hot reload of tether proxy in-process: routes and clusters swapped under real clients (curl,
// wrk) and real backends, what did not change kept, a bad config refused whole.
#include "tether/proxy/server.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <optional>
#include <regex>
#include <string>
#include <thread>

#include "http_test_server.hpp"
#include "proxy_fixture.hpp"

namespace tether::proxy {
namespace {

using namespace std::chrono_literals;
using testing::http_test_server;
using testing::proxy_fixture;
using testing::run;
using steady = std::chrono::steady_clock;

/// The value of the series whose line starts with `series` in the proxy's /metrics, or -1.
double metric(std::uint16_t admin_port, const std::string& series) {
  const auto text =
      run("curl -sS --max-time 5 http://127.0.0.1:" + std::to_string(admin_port) + "/metrics");
  const auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) {
    return -1;
  }
  return std::stod(text.substr(at + series.size() + 2));
}

/// Connections cluster "a"'s pools for the endpoint at `port` closed for `reason`, summed over
/// the two workers: "retired" when a reload took the endpoint out of the config (closed when
/// idle), "pool_closed" when its pools closed.
double closed_for(std::uint16_t admin_port, std::uint16_t port, const std::string& reason) {
  const std::string series =
      "tether_pool_connections_closed_total{cluster=\"a\",endpoint=\"127.0.0.1:" +
      std::to_string(port) + "\",reason=\"" + reason + "\",worker=\"";
  double sum = 0;
  for (const char* w : {"0", "1"}) {
    sum += std::max(0.0, metric(admin_port, series + w + "\"}"));
  }
  return sum;
}

double retired(std::uint16_t admin_port, std::uint16_t port) {
  return closed_for(admin_port, port, "retired");
}

double pool_closed(std::uint16_t admin_port, std::uint16_t port) {
  return closed_for(admin_port, port, "pool_closed");
}

/// Retired clusters that requests or tunnels still use.
double draining(std::uint16_t admin_port) {
  return metric(admin_port, "tether_proxy_clusters_draining");
}

std::string endpoint(std::uint16_t port) {
  return "\"127.0.0.1:" + std::to_string(port) + "\"";
}

/// Two clusters, "a" and "b"; /a/ goes to a, everything else to `rest`.
/// Two workers unless said: a reload reaches every one.
std::string two_clusters(std::uint16_t a, std::uint16_t b, const std::string& rest,
                         const std::string& listener_port = "0", int workers = 2) {
  return "workers: " + std::to_string(workers) +
         "\n"
         "drain_timeout: 5s\n"
         "listeners: [{name: main, address: 127.0.0.1, port: " +
         listener_port +
         "}]\n"
         "admin: {address: 127.0.0.1, port: 0}\n"
         "routes:\n"
         "  - {path_prefix: /a/, cluster: a}\n"
         "  - {path_prefix: /, cluster: " +
         rest +
         "}\n"
         "clusters:\n"
         "  - {name: a, endpoints: [" +
         endpoint(a) +
         "]}\n"
         "  - {name: b, endpoints: [" +
         endpoint(b) + "]}\n";
}

config loaded(const std::string& yaml) {
  auto l = load_config(yaml, "reload.yaml");
  EXPECT_TRUE(l.value) << (l.errors.empty() ? "" : l.errors[0]);
  return *l.value;
}

/// A config file the proxy's source reads, rewritten by the test.
class config_file {
public:
  config_file() {
    char name[] = "/tmp/tether-reload-XXXXXX";
    const int fd = ::mkstemp(name);
    ::close(fd);
    path_ = name;
  }
  config_file(const config_file&) = delete;
  config_file& operator=(const config_file&) = delete;
  ~config_file() { std::remove(path_.c_str()); }
  void write(const std::string& yaml) const { std::ofstream{path_} << yaml; }
  [[nodiscard]] const std::string& path() const { return path_; }

private:
  std::string path_;
};

TEST(proxy_reload, a_route_moves_to_another_cluster_and_an_unchanged_one_keeps_its_connections) {
  http_test_server a;
  http_test_server b;
  // One worker: the pooled connection a second client finds is that worker's.
  proxy_fixture proxy{two_clusters(a.port(), b.port(), "a", "0", 1), nullptr};
  const std::string curl = "curl -sS --max-time 10 -o /dev/null -o /dev/null -w '%{http_code} ' ";
  EXPECT_EQ(run(curl + proxy.url("/x") + " " + proxy.url("/a/y")), "200 200 ");
  EXPECT_EQ(a.requests(), 2);
  EXPECT_EQ(b.requests(), 0);
  const auto connections_before = a.connections();
  const auto hash_before =
      run("curl -sS http://127.0.0.1:" + std::to_string(proxy.admin_port()) + "/config");

  const auto errors = proxy.get().reload(loaded(two_clusters(a.port(), b.port(), "b", "0", 1)));
  ASSERT_TRUE(errors.empty()) << errors[0];
  // The next connection runs under the new routes; cluster "a" did not change, so its pooled
  // connection serves /a/ still.
  EXPECT_EQ(run(curl + proxy.url("/x") + " " + proxy.url("/a/y")), "200 200 ");
  EXPECT_EQ(b.requests(), 1);
  EXPECT_EQ(a.requests(), 3);
  EXPECT_EQ(a.connections(), connections_before);
  EXPECT_EQ(metric(proxy.admin_port(), "tether_proxy_config_reloads_total{result=\"success\"}"), 1);
  // /config shows the new routes and hash; the metric names the same hash.
  const auto shown =
      run("curl -sS http://127.0.0.1:" + std::to_string(proxy.admin_port()) + "/config");
  std::smatch hash;
  ASSERT_TRUE(std::regex_search(shown, hash, std::regex{R"re("hash": "([0-9a-f]{16})")re"}))
      << shown;
  EXPECT_EQ(hash_before.find(hash[1].str()), std::string::npos);
  EXPECT_EQ(metric(proxy.admin_port(), "tether_proxy_config_info{hash=\"" + hash[1].str() + "\"}"),
            1);
  EXPECT_EQ(proxy.get().running_config().routes[1].cluster, "b");
}

TEST(proxy_reload, a_bad_config_changes_nothing_and_says_what_and_where) {
  http_test_server a;
  http_test_server b;
  config_file file;
  const auto good = two_clusters(a.port(), b.port(), "a");
  file.write(good);
  auto start = load_config_file(file.path());
  ASSERT_TRUE(start.value);
  server proxy{*start.value};
  proxy.set_config_source([&file] { return load_config_file(file.path()); });
  ASSERT_FALSE(proxy.start()) << proxy.start_failure();
  const auto url = "http://127.0.0.1:" + std::to_string(proxy.listener_ports()[0]) + "/x";
  const auto admin = "http://127.0.0.1:" + std::to_string(proxy.admin_port());

  // A route to a cluster that does not exist: the error names the file, line and column.
  file.write(two_clusters(a.port(), b.port(), "nowhere"));
  auto errors = proxy.reload();
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_NE(errors[0].find(file.path() + ":7:"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("nowhere"), std::string::npos) << errors[0];
  // The same through the admin listener: 400 with the error, and still the old routes.
  const auto posted = run("curl -sS -X POST -w ' %{http_code}' " + admin + "/reload");
  EXPECT_NE(posted.find("nowhere"), std::string::npos) << posted;
  EXPECT_NE(posted.find(" 400"), std::string::npos) << posted;
  EXPECT_EQ(run("curl -sS -o /dev/null -w '%{http_code}' " + url), "200");
  EXPECT_EQ(a.requests(), 1);

  // A listener moved to a port another socket holds: refused with the address, and the
  // routes stay as they were too. The worker count does not change on reload: refused, with
  // what does change it.
  asio::io_context io;
  asio::ip::tcp::acceptor holder{io, {asio::ip::make_address("127.0.0.1"), 0}};
  const auto held = std::to_string(holder.local_endpoint().port());
  file.write(two_clusters(a.port(), b.port(), "b", held));
  errors = proxy.reload();
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_NE(errors[0].find("cannot listen on 127.0.0.1:" + held + " (listener 'main')"),
            std::string::npos)
      << errors[0];
  file.write(two_clusters(a.port(), b.port(), "b", "0", 1));
  errors = proxy.reload();
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_NE(errors[0].find("workers changed"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("--take-over"), std::string::npos) << errors[0];
  EXPECT_EQ(run("curl -sS -o /dev/null -w '%{http_code}' " + url), "200");
  EXPECT_EQ(a.requests(), 2);
  EXPECT_EQ(metric(proxy.admin_port(), "tether_proxy_config_reloads_total{result=\"failure\"}"), 4);

  // Only GET and POST /reload are answered.
  EXPECT_EQ(run("curl -sS -o /dev/null -w '%{http_code}' " + admin + "/reload"), "405");

  // A good one through POST /reload.
  file.write(two_clusters(a.port(), b.port(), "b"));
  const auto ok = run("curl -sS -X POST " + admin + "/reload");
  EXPECT_EQ(ok.rfind("reloaded: config ", 0), 0U) << ok;
  EXPECT_EQ(run("curl -sS -o /dev/null -w '%{http_code}' " + url), "200");
  EXPECT_EQ(b.requests(), 1);
  proxy.stop();
}

TEST(proxy_reload, a_changed_cluster_closes_its_pooled_connections_and_its_successor_takes_over) {
  http_test_server a;
  http_test_server b;
  http_test_server c;
  proxy_fixture proxy{two_clusters(a.port(), b.port(), "a"), nullptr};
  EXPECT_EQ(run("curl -sS -o /dev/null -w '%{http_code}' " + proxy.url("/x")), "200");
  const auto closed_at_a = [&] { return retired(proxy.admin_port(), a.port()); };
  EXPECT_EQ(closed_at_a(), 0);

  // Cluster "a" now has c as its only endpoint: a new cluster "a" takes over, the old one is
  // retired, and its endpoint a, which no cluster holds now, closes its idle connection.
  const auto errors = proxy.get().reload(loaded(two_clusters(c.port(), b.port(), "a")));
  ASSERT_TRUE(errors.empty()) << errors[0];
  const auto give_up = steady::now() + 5s;
  while ((closed_at_a() < 1 || draining(proxy.admin_port()) != 0) && steady::now() < give_up) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(closed_at_a(), 1);
  EXPECT_EQ(draining(proxy.admin_port()), 0) << "nothing holds the retired cluster";
  EXPECT_EQ(run("curl -sS -o /dev/null -w '%{http_code}' " + proxy.url("/x")), "200");
  EXPECT_EQ(c.requests(), 1);
  EXPECT_EQ(a.requests(), 1);
  // The retired pools' gauges are gone; the new cluster's are there.
  EXPECT_EQ(
      metric(proxy.admin_port(), "tether_proxy_host_healthy{cluster=\"a\",endpoint=\"127.0.0.1:" +
                                     std::to_string(a.port()) + "\"}"),
      -1);
  EXPECT_EQ(
      metric(proxy.admin_port(), "tether_proxy_host_healthy{cluster=\"a\",endpoint=\"127.0.0.1:" +
                                     std::to_string(c.port()) + "\"}"),
      1);
}

TEST(proxy_reload, a_cluster_whose_endpoints_change_keeps_those_that_stay_with_their_connections) {
  http_test_server a;
  http_test_server b;
  http_test_server c;
  http_test_server other;
  // One worker: the pooled connection a later request finds is that worker's.
  const auto with_endpoints = [&](std::uint16_t second) {
    auto yaml = two_clusters(a.port(), other.port(), "a", "0", 1);
    const auto list = "[" + endpoint(a.port()) + "]";
    return yaml.replace(yaml.find(list), list.size(),
                        "[" + endpoint(a.port()) + ", " + endpoint(second) + "]");
  };
  proxy_fixture proxy{with_endpoints(b.port()), nullptr};
  const std::string curl = "curl -sS --max-time 10 -o /dev/null -o /dev/null -w '%{http_code} ' ";
  // Round robin: one request to each endpoint, each on a connection the pool keeps.
  EXPECT_EQ(run(curl + proxy.url("/x") + " " + proxy.url("/y")), "200 200 ");
  ASSERT_EQ(a.requests(), 1);
  ASSERT_EQ(b.requests(), 1);

  // b leaves cluster a, c joins it: a's connection stays pooled, b's closes with its pool.
  const auto errors = proxy.get().reload(loaded(with_endpoints(c.port())));
  ASSERT_TRUE(errors.empty()) << errors[0];
  const auto give_up = steady::now() + 5s;
  while (retired(proxy.admin_port(), b.port()) < 1 && steady::now() < give_up) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(retired(proxy.admin_port(), b.port()), 1);
  EXPECT_EQ(run(curl + proxy.url("/x") + " " + proxy.url("/y")), "200 200 ");
  EXPECT_EQ(a.requests(), 2);
  EXPECT_EQ(c.requests(), 1);
  EXPECT_EQ(b.requests(), 1);
  EXPECT_EQ(a.connections(), 1) << "the endpoint that stayed opened a connection again";
  EXPECT_EQ(retired(proxy.admin_port(), a.port()), 0);
  EXPECT_EQ(pool_closed(proxy.admin_port(), a.port()), 0);
  // Its gauges are the new cluster's now, and the one that left has none.
  const auto healthy = [&](std::uint16_t port) {
    return metric(proxy.admin_port(),
                  "tether_proxy_host_healthy{cluster=\"a\",endpoint=" + endpoint(port) + "}");
  };
  EXPECT_EQ(healthy(a.port()), 1);
  EXPECT_EQ(healthy(c.port()), 1);
  EXPECT_EQ(healthy(b.port()), -1);
  EXPECT_EQ(metric(proxy.admin_port(), "tether_pool_connections{cluster=\"a\",endpoint=" +
                                           endpoint(a.port()) + ",state=\"idle\",worker=\"0\"}"),
            1);
}

TEST(proxy_reload, an_endpoint_kept_goes_on_with_its_health_checks_schedule) {
  http_test_server a;
  http_test_server c;
  http_test_server other;
  // Checks an hour apart: each endpoint is checked once at start, and not again for an hour.
  const auto with_endpoints = [&](const std::string& list) {
    auto yaml = two_clusters(a.port(), other.port(), "a");
    const auto was = "[" + endpoint(a.port()) + "]";
    return yaml.replace(yaml.find(was), was.size(),
                        list + ", health_check: {type: http, path: /health, interval: 1h, "
                               "jitter: 0s, timeout: 2s}");
  };
  proxy_fixture proxy{with_endpoints("[" + endpoint(a.port()) + "]"), nullptr};
  const auto passed = [&](std::uint16_t port) {
    return metric(proxy.admin_port(), "tether_proxy_health_checks_total{cluster=\"a\",endpoint=" +
                                          endpoint(port) + ",result=\"passed\"}");
  };
  const auto wait_for_check = [&](std::uint16_t port) {
    const auto give_up = steady::now() + 5s;
    while (passed(port) < 1 && steady::now() < give_up) {
      std::this_thread::sleep_for(10ms);
    }
    return passed(port);
  };
  ASSERT_EQ(wait_for_check(a.port()), 1);

  // c joins: it is checked at once (and serves once it passes); a keeps its verdict and its
  // next check an hour away, where a cluster built anew would check it again now.
  const auto errors = proxy.get().reload(
      loaded(with_endpoints("[" + endpoint(a.port()) + ", " + endpoint(c.port()) + "]")));
  ASSERT_TRUE(errors.empty()) << errors[0];
  EXPECT_EQ(wait_for_check(c.port()), 1);
  EXPECT_EQ(passed(a.port()), 1);
  const std::string curl = "curl -sS --max-time 10 -o /dev/null -o /dev/null -w '%{http_code} ' ";
  EXPECT_EQ(run(curl + proxy.url("/a/x") + " " + proxy.url("/a/y")), "200 200 ");
  EXPECT_EQ(c.requests(), 2); // one check, one request
  EXPECT_EQ(a.requests(), 2);
}

/// One kept-alive client connection across a reload that retires cluster a: its first request
/// (`first`: /one, or /slow, answered 300 ms after the reload began) is done, and while it waits
/// to send its second the retired cluster must close its pools: the connection took the new
/// config. The second request, on the same connection, goes to the new cluster.
void kept_alive_across_a_reload(const std::string& first) {
  http_test_server a;
  http_test_server b;
  http_test_server c;
  config_file go; // the client's signal to send its second request
  std::remove(go.path().c_str());
  proxy_fixture proxy{two_clusters(a.port(), b.port(), "a"), nullptr};
  // One connection, two requests: the second only once the test says so.
  auto client = std::async(std::launch::async, [&] {
    return run("python3 -c \"import http.client, os, time\n"
               "c = http.client.HTTPConnection('127.0.0.1', " +
               std::to_string(proxy.port()) +
               ", timeout=10)\n"
               "c.request('GET', '" +
               first +
               "'); r = c.getresponse(); r.read(); first = r.status\n"
               "open('" +
               go.path() +
               ".first', 'w').close()\n"
               "end = time.time() + 10\n"
               "while not os.path.exists('" +
               go.path() +
               "') and time.time() < end: time.sleep(0.01)\n"
               "c.request('GET', '/two'); r = c.getresponse(); r.read()\n"
               "print(first, r.status)\"");
  });
  const auto give_up = steady::now() + 5s;
  // /slow: reload while the proxy waits for its answer; else once the client has its answer.
  const auto ready = [&] {
    return first == "/slow" ? a.requests() >= 1
                            : ::access((go.path() + ".first").c_str(), F_OK) == 0;
  };
  while (!ready() && steady::now() < give_up) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(ready());
  // Cluster a moves to c; the client's connection takes the new config once its request is
  // done (or at once, idle), so the retired cluster closes its pools while it waits.
  const auto errors = proxy.get().reload(loaded(two_clusters(c.port(), b.port(), "a")));
  ASSERT_TRUE(errors.empty()) << errors[0];
  // a's connection closes when idle (at once, or when the slow answer is in), and the retired
  // cluster goes when the client's connection lets go of it.
  const auto let_go = [&] {
    return retired(proxy.admin_port(), a.port()) >= 1 && draining(proxy.admin_port()) == 0;
  };
  while (!let_go() && steady::now() < give_up + 5s) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(retired(proxy.admin_port(), a.port()), 1);
  EXPECT_EQ(draining(proxy.admin_port()), 0) << "the idle client still holds the retired cluster";
  std::ofstream{go.path()} << "go";
  EXPECT_EQ(client.get(), "200 200\n");
  EXPECT_EQ(c.requests(), 1); // the same client connection, the new cluster
  EXPECT_EQ(a.requests(), 1);
  std::remove((go.path() + ".first").c_str());
}

TEST(proxy_reload, a_kept_alive_client_idle_at_the_reload_lets_go_of_the_old_config) {
  kept_alive_across_a_reload("/one");
}

TEST(proxy_reload, a_client_busy_at_the_reload_lets_go_of_the_old_config_when_its_request_ends) {
  kept_alive_across_a_reload("/slow");
}

TEST(proxy_reload, a_tunnel_open_across_a_reload_keeps_no_idle_connection_of_a_removed_endpoint) {
  http_test_server a;
  http_test_server c;
  http_test_server t;
  // One worker: an HTTP listener to cluster a, a tcp listener to cluster t.
  const auto with_a = [&](std::uint16_t endpoint_of_a) {
    return "workers: 1\n"
           "drain_timeout: 5s\n"
           "listeners:\n"
           "  - {name: main, address: 127.0.0.1, port: 0}\n"
           "  - {name: raw, address: 127.0.0.1, port: 0, tcp: {cluster: t}}\n"
           "admin: {address: 127.0.0.1, port: 0}\n"
           "routes: [{path_prefix: /, cluster: a}]\n"
           "clusters:\n"
           "  - {name: a, endpoints: [" +
           endpoint(endpoint_of_a) +
           "]}\n"
           "  - {name: t, endpoints: [" +
           endpoint(t.port()) + "]}\n";
  };
  proxy_fixture proxy{with_a(a.port()), nullptr};
  EXPECT_EQ(run("curl -sS -o /dev/null -w '%{http_code}' " + proxy.url("/x")), "200");
  ASSERT_EQ(a.connections(), 1); // pooled, idle
  // A tunnel through the tcp listener, open across the reload: its connection holds the config
  // it began under, cluster a's old self with it.
  std::optional<testing::kept_alive_client> tunnel{std::in_place,
                                                   proxy.get().listener_ports().at(1)};
  EXPECT_EQ(tunnel->get("/through").rfind("HTTP/1.1 200", 0), 0U);

  const auto errors = proxy.get().reload(loaded(with_a(c.port())));
  ASSERT_TRUE(errors.empty()) << errors[0];
  const auto give_up = steady::now() + 5s;
  while (retired(proxy.admin_port(), a.port()) < 1 && steady::now() < give_up) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(retired(proxy.admin_port(), a.port()), 1)
      << "the removed endpoint's idle connection waits for the tunnel to end";
  EXPECT_EQ(draining(proxy.admin_port()), 1) << "the tunnel holds the retired cluster";
  EXPECT_EQ(tunnel->get("/still").rfind("HTTP/1.1 200", 0), 0U);
  EXPECT_EQ(run("curl -sS -o /dev/null -w '%{http_code}' " + proxy.url("/x")), "200");
  EXPECT_EQ(c.requests(), 1);
  EXPECT_EQ(a.requests(), 1);
  EXPECT_EQ(t.requests(), 2);
  // The tunnel ends (its client closes): nothing holds the retired cluster any more.
  tunnel.reset();
  while (draining(proxy.admin_port()) != 0 && steady::now() < give_up + 5s) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(draining(proxy.admin_port()), 0);
}

/// Two workers, the listeners given (YAML flow items), everything to the backend on `backend`.
std::string with_listeners(std::uint16_t backend, const std::string& listeners) {
  return "workers: 2\n"
         "drain_timeout: 5s\n"
         "listeners: [" +
         listeners +
         "]\n"
         "admin: {address: 127.0.0.1, port: 0}\n"
         "routes: [{path_prefix: /, cluster: a}]\n"
         "clusters: [{name: a, endpoints: [" +
         endpoint(backend) + "]}]\n";
}

std::string status_at(std::uint16_t port, const std::string& path = "/",
                      const std::string& host = "127.0.0.1") {
  return run("curl -sS --max-time 5 -o /dev/null -w '%{http_code}' http://" + host + ":" +
             std::to_string(port) + path + " 2>/dev/null");
}

TEST(proxy_reload, a_listener_added_is_bound_and_one_removed_stops_accepting_as_its_request_ends) {
  http_test_server a;
  proxy_fixture proxy{with_listeners(a.port(), "{name: main, address: 127.0.0.1, port: 0}"),
                      nullptr};
  const auto main_port = proxy.port();
  // A kept-alive request in flight on "main" (the backend answers /slow after 300 ms) when it
  // goes: answered, then its connection closes (the client does not close it).
  auto slow = std::async(std::launch::async, [&] {
    bool closed = false;
    auto answer =
        testing::raw_exchange(main_port, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n", &closed);
    return std::make_pair(answer, closed);
  });
  const auto give_up = steady::now() + 5s;
  while (a.requests() < 1 && steady::now() < give_up) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(a.requests(), 1);
  // (Another address: on the same one, port 0 would be the same socket, "main" renamed.)
  auto errors = proxy.get().reload(
      loaded(with_listeners(a.port(), "{name: other, address: 127.0.0.2, port: 0}")));
  ASSERT_TRUE(errors.empty()) << errors[0];
  EXPECT_EQ(slow.wait_for(0s), std::future_status::timeout) << "the request was not in flight";
  const auto ports = proxy.get().listener_ports();
  ASSERT_EQ(ports.size(), 1U);
  const auto other_port = ports[0];
  EXPECT_EQ(status_at(other_port, "/", "127.0.0.2"), "200");
  const auto [answer, closed] = slow.get();
  EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK", 0), 0U) << answer;
  EXPECT_TRUE(closed) << "the closed listener's kept-alive connection stays open";
  EXPECT_EQ(run("curl -sS --max-time 5 -o /dev/null http://127.0.0.1:" + std::to_string(main_port) +
                "/ >/dev/null 2>&1; echo $?"),
            "7\n")
      << "curl is not refused on the closed listener's port";

  // "main" back, on its old port; "other" (port 0, running on other_port) keeps its sockets.
  errors = proxy.get().reload(loaded(with_listeners(
      a.port(), "{name: main, address: 127.0.0.1, port: " + std::to_string(main_port) +
                    "}, {name: other, address: 127.0.0.2, port: 0}")));
  ASSERT_TRUE(errors.empty()) << errors[0];
  EXPECT_EQ(proxy.get().listener_ports(), (std::vector<std::uint16_t>{main_port, other_port}));
  EXPECT_EQ(status_at(main_port), "200");
  EXPECT_EQ(status_at(other_port, "/", "127.0.0.2"), "200");
  EXPECT_EQ(a.requests(), 4);
  EXPECT_EQ(metric(proxy.admin_port(), "tether_proxy_config_reloads_total{result=\"success\"}"), 2);
}

TEST(proxy_reload, a_listener_renamed_or_reordered_keeps_its_sockets_and_its_connections) {
  http_test_server a;
  proxy_fixture proxy{with_listeners(a.port(), "{name: one, address: 127.0.0.1, port: 0}, "
                                               "{name: two, address: 127.0.0.1, port: 0}"),
                      nullptr};
  const auto before = proxy.get().listener_ports();
  // A client kept alive on "two" across the reload.
  testing::kept_alive_client client{before[1]};
  ASSERT_EQ(client.get("/first").rfind("HTTP/1.1 200 OK", 0), 0U);
  // "two" renamed "second" and listed first: the same sockets, the connection not told to go.
  const auto errors = proxy.get().reload(loaded(with_listeners(
      a.port(), "{name: second, address: 127.0.0.1, port: " + std::to_string(before[1]) +
                    "}, {name: one, address: 127.0.0.1, port: 0}")));
  ASSERT_TRUE(errors.empty()) << errors[0];
  EXPECT_EQ(proxy.get().listener_ports(), (std::vector<std::uint16_t>{before[1], before[0]}));
  const auto again = client.get("/second");
  EXPECT_EQ(again.rfind("HTTP/1.1 200 OK", 0), 0U) << again;
  EXPECT_EQ(again.find("Connection: close"), std::string::npos) << again;
  EXPECT_EQ(status_at(before[0]), "200");
  EXPECT_EQ(status_at(before[1]), "200");
}

TEST(proxy_reload, twenty_reloads_under_wrk_fail_no_request_and_reset_no_connection) {
  http_test_server a;
  http_test_server b;
  http_test_server c;
  proxy_fixture proxy{two_clusters(a.port(), b.port(), "a"), nullptr};
  auto load = std::async(std::launch::async,
                         [&] { return run("wrk -t1 -c8 -d3s " + proxy.url("/") + " 2>&1"); });
  // Each reload changes where "/" goes and cluster a's endpoints, so clusters are built and
  // retired under requests in flight.
  const auto give_up = steady::now() + 5s;
  while (a.requests() < 200 && steady::now() < give_up) {
    std::this_thread::sleep_for(1ms);
  }
  for (int i = 0; i < 20; ++i) {
    const auto first = i % 2 == 0 ? c.port() : a.port();
    const auto errors =
        proxy.get().reload(loaded(two_clusters(first, b.port(), i % 3 == 0 ? "b" : "a")));
    ASSERT_TRUE(errors.empty()) << errors[0];
    std::this_thread::sleep_for(50ms);
  }
  const auto out = load.get();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex{R"((\d+) requests in)"})) << out;
  EXPECT_GT(std::stoi(m[1]), 1000) << out;
  EXPECT_EQ(out.find("Non-2xx"), std::string::npos) << out;
  EXPECT_EQ(out.find("Socket errors"), std::string::npos) << out;
  EXPECT_GT(a.requests() + c.requests(), 0);
  EXPECT_GT(b.requests(), 0);
  EXPECT_EQ(metric(proxy.admin_port(), "tether_proxy_config_reloads_total{result=\"success\"}"),
            20);
  // The endpoints each reload took out closed their connections once their requests were done.
  const double closed =
      retired(proxy.admin_port(), a.port()) + retired(proxy.admin_port(), c.port());
  EXPECT_GT(closed, 0);
  for (const char* cause : {"connect_failure", "pool_timeout", "upstream_reset", "bad_response"}) {
    EXPECT_EQ(metric(proxy.admin_port(),
                     std::string{"tether_proxy_errors_total{cause=\""} + cause + "\"}"),
              0)
        << cause;
  }
}

} // namespace
} // namespace tether::proxy
