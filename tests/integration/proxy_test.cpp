// tether proxy in-process, with real clients (curl, Python's http.client, wrk, tether's client,
// raw sockets) in front and real servers (tether's failing test server, nginx) behind.
#include "tether/proxy/server.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <future>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <asio/executor_work_guard.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "http_test_server.hpp"
#include "nginx_server.hpp"
#include "proxy_fixture.hpp"
#include "tether/http/client.hpp"

namespace tether::proxy {
namespace {

using namespace std::chrono_literals;
using testing::http_test_server;
using fault = http_test_server::fault;
using steady = std::chrono::steady_clock;
using testing::proxy_fixture;
using testing::run;

/// The inodes of the sockets a child inherits when it execs without closing anything (as a
/// health check script or any child a library user starts would).
std::set<std::string> sockets_a_child_inherits() {
  const std::string listing = run("ls -l /proc/self/fd", true);
  std::set<std::string> inodes;
  const std::regex socket_link{R"(socket:\[(\d+)\])"};
  for (std::sregex_iterator it{listing.begin(), listing.end(), socket_link}, end; it != end; ++it) {
    inodes.insert((*it)[1]);
  }
  return inodes;
}

/// This machine's IPv4 TCP sockets: inode to (local port, remote port), from /proc/net/tcp.
std::map<std::string, std::pair<int, int>> tcp_sockets() {
  std::map<std::string, std::pair<int, int>> out;
  std::ifstream in{"/proc/net/tcp"};
  std::string line;
  std::getline(in, line); // the column names
  while (std::getline(in, line)) {
    std::istringstream fields{line};
    std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
    fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
        timeout >> inode;
    const auto port = [](const std::string& a) {
      return std::stoi(a.substr(a.find(':') + 1), nullptr, 16);
    };
    out[inode] = {port(local), port(remote)};
  }
  return out;
}

TEST(proxy, a_child_process_inherits_none_of_its_sockets) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  // A request served over a connection left open: the proxy now holds its listener, the admin
  // listener, the accepted connection and a pooled upstream connection.
  asio::io_context io;
  asio::ip::tcp::socket client{io};
  client.connect({asio::ip::make_address("127.0.0.1"), proxy.port()});
  const std::string request = "GET /kept HTTP/1.1\r\nHost: x\r\n\r\n";
  asio::write(client, asio::buffer(request));
  std::string response;
  while (response.find("\r\n\r\nok") == std::string::npos) {
    char buf[512];
    std::error_code ec;
    const auto n = client.read_some(asio::buffer(buf), ec);
    ASSERT_FALSE(ec) << ec.message();
    response.append(buf, n);
  }

  const auto sockets = tcp_sockets();
  const auto proxys = [&](const std::pair<int, int>& ports) {
    return ports.first == proxy.port() || ports.first == proxy.admin_port() ||
           ports.second == backend.port();
  };
  // The check below means something only if the proxy's sockets are there to be found: the
  // two listeners, the accepted connection and the upstream one.
  EXPECT_GE(std::count_if(sockets.begin(), sockets.end(),
                          [&](const auto& entry) { return proxys(entry.second); }),
            4);
  for (const auto& inode : sockets_a_child_inherits()) {
    const auto found = sockets.find(inode);
    if (found != sockets.end()) {
      EXPECT_FALSE(proxys(found->second))
          << "a child inherited the proxy's socket with local port " << found->second.first
          << " and remote port " << found->second.second;
    }
  }
}

TEST(proxy, forwards_requests_over_few_upstream_connections) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  // One curl, many URLs: one client connection, one upstream connection.
  std::string urls;
  for (int i = 0; i < 50; ++i) {
    urls += " " + proxy.url("/n" + std::to_string(i));
  }
  const auto out = run("curl -sS --max-time 10" + urls);
  std::string expected;
  for (int i = 0; i < 50; ++i) {
    expected += "ok";
  }
  EXPECT_EQ(out, expected);
  EXPECT_EQ(backend.requests(), 50);
  EXPECT_EQ(backend.connections(), 1);

  // Python's http.client on one kept-alive connection.
  const auto py = run("python3 -c \"import http.client as h\n"
                      "c = h.HTTPConnection('127.0.0.1', " +
                      std::to_string(proxy.port()) +
                      ", timeout=5)\n"
                      "for i in range(20):\n"
                      "    c.request('GET', '/p%d' % i)\n"
                      "    r = c.getresponse()\n"
                      "    assert r.status == 200 and r.read() == b'ok', r.status\n"
                      "print('python ok', c.sock is not None)\"");
  EXPECT_EQ(py, "python ok True\n");
  EXPECT_EQ(backend.connections(), 1);
}

TEST(proxy, adds_forwarding_headers_and_drops_hop_by_hop_ones) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  const auto out = run("curl -sS --max-time 5 -H 'Connection: keep-alive, X-Secret' "
                       "-H 'X-Secret: 1' -H 'X-Forwarded-For: 10.1.1.1' -H 'Host: shop.example' " +
                       proxy.url("/headers"));
  EXPECT_NE(out.find("Host: shop.example\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Via: 1.1 tether\n"), std::string::npos) << out;
  EXPECT_NE(out.find("X-Forwarded-For: 10.1.1.1, 127.0.0.1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("X-Forwarded-Proto: http\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("X-Secret"), std::string::npos) << out;
  EXPECT_EQ(out.find("Connection:"), std::string::npos) << out;
}

TEST(proxy, streams_large_and_chunked_bodies_both_ways) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  char name[] = "/tmp/tether-body-XXXXXX";
  const int fd = ::mkstemp(name);
  std::string body;
  for (int i = 0; i < 2 * 1024 * 1024; ++i) {
    body.push_back(static_cast<char>('a' + i % 26));
  }
  ASSERT_EQ(::write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
  ::close(fd);
  // A chunked upload of 2 MiB (curl sends Expect: 100-continue too), echoed back.
  const auto echoed = run("curl -sS --max-time 10 -H 'Transfer-Encoding: chunked' "
                          "--data-binary @" +
                          std::string{name} + " " + proxy.url("/echo"));
  ::unlink(name);
  EXPECT_EQ(echoed.size(), body.size());
  EXPECT_TRUE(echoed == body);
  // A chunked response.
  EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/chunked")), "abbccc");
}

TEST(proxy, streams_a_large_file_from_nginx) {
  testing::nginx_server nginx;
  proxy_fixture proxy{{nginx.port()}};
  const auto out = run("curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{size_download}' " +
                       proxy.url("/large.bin"));
  EXPECT_EQ(out, "200 1048576");
  const auto head = run("curl -sS --max-time 5 -I " + proxy.url("/small.txt"));
  EXPECT_NE(head.find("Content-Length: 17"), std::string::npos) << head;
}

TEST(proxy, refuses_smuggling_attempts_before_the_backend_sees_them) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  const std::string attempts[] = {
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
      "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n",
      "GET / HTTP/1.1\nHost: a\n\n",
  };
  for (const auto& a : attempts) {
    const auto out = proxy.raw(a);
    EXPECT_EQ(out.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0U) << out;
    EXPECT_NE(out.find("X-Tether-Reason: "), std::string::npos);
  }
  EXPECT_EQ(backend.requests(), 0);
}

TEST(proxy, answers_what_it_cannot_forward_with_a_reason) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}, "    request_timeout: 300ms\n", true};
  const auto code = [&](const std::string& path) {
    return run("curl -sS --max-time 5 -o /dev/null -D - -w '%{http_code}' " + proxy.url(path));
  };
  auto none = code("/other");
  EXPECT_NE(none.find("X-Tether-Reason: no route for /other"), std::string::npos) << none;
  EXPECT_EQ(none.substr(none.size() - 3), "404");

  backend.set_fault(fault::close, 1);
  auto closed = code("/api/x");
  EXPECT_EQ(closed.substr(closed.size() - 3), "502") << closed;
  EXPECT_NE(closed.find("before answering"), std::string::npos) << closed;

  backend.set_fault(fault::stall, 1);
  const auto started = steady::now();
  auto stalled = code("/api/x");
  EXPECT_EQ(stalled.substr(stalled.size() - 3), "504") << stalled;
  EXPECT_GE(steady::now() - started, 290ms);

  EXPECT_EQ(code("/api/fine").substr(0, 0) + run("curl -sS --max-time 5 " + proxy.url("/api/x")),
            "ok");
  const auto metrics =
      run("curl -sS http://127.0.0.1:" + std::to_string(proxy.admin_port()) + "/metrics");
  EXPECT_NE(metrics.find("tether_proxy_errors_total{cause=\"no_route\"} 1"), std::string::npos);
  EXPECT_NE(metrics.find("tether_proxy_errors_total{cause=\"upstream_timeout\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics.find("tether_proxy_errors_total{cause=\"upstream_reset\"} 1"),
            std::string::npos);
}

TEST(proxy, keeps_client_and_upstream_connections_in_step) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}, "", true};
  // A HEAD answered by the proxy itself carries no body, so the next response on the
  // connection is read from the right place.
  const auto two = proxy.raw("HEAD /nope HTTP/1.1\r\nHost: a\r\n\r\n"
                             "GET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  const auto end_of_first = two.find("\r\n\r\n");
  ASSERT_NE(end_of_first, std::string::npos) << two;
  EXPECT_EQ(two.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0U) << two;
  EXPECT_EQ(two.substr(end_of_first + 4, 22), "HTTP/1.1 404 Not Found") << two;
  // An upstream that answers one request twice: the client gets the first answer only, the
  // second request on its connection gets its own, and the upstream connection is dropped.
  proxy_fixture all{{backend.port()}};
  EXPECT_EQ(run("curl -sS --max-time 5 " + all.url("/double") + " " + all.url("/x")), "oneok");
  EXPECT_EQ(backend.connections(), 2);
  // An HTTP/1.0 client asking for keep-alive is told it has it.
  const auto old = all.raw("GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                           "GET /x HTTP/1.0\r\n\r\n");
  EXPECT_NE(old.find("Connection: keep-alive\r\n"), std::string::npos) << old;
  EXPECT_EQ(old.rfind("HTTP/1.1 200 OK"), old.find("HTTP/1.1 200 OK", 1)) << old;
}

TEST(proxy, a_chunked_response_reaches_an_http10_client_unchunked_and_closed) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  // Connection: keep-alive asks to keep the connection; a body whose end only the close can
  // mark cannot allow it.
  const auto out = proxy.raw("GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0U) << out;
  EXPECT_EQ(out.find("Transfer-Encoding"), std::string::npos) << out;
  EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.substr(out.find("\r\n\r\n") + 4), "abbccc") << out;
}

TEST(proxy, an_unreachable_upstream_is_a_502) {
  std::uint16_t closed_port = 0;
  {
    asio::io_context io;
    asio::ip::tcp::acceptor a{io, {asio::ip::make_address("127.0.0.1"), 0}};
    closed_port = a.local_endpoint().port();
  }
  proxy_fixture proxy{{closed_port}};
  const auto out = run("curl -sS --max-time 5 -D - " + proxy.url("/"));
  EXPECT_EQ(out.rfind("HTTP/1.1 502 Bad Gateway", 0), 0U) << out;
  EXPECT_NE(out.find("X-Tether-Reason: upstream connect failed: Connection refused"),
            std::string::npos)
      << out;
}

TEST(proxy, slow_clients_do_not_stop_others_from_being_served) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()},
                      "downstream: {request_header_timeout: 2s, idle_timeout: 30s}\n"};
  // 1,000 clients that send half a head and then nothing (slowloris).
  asio::io_context io;
  std::vector<std::unique_ptr<asio::ip::tcp::socket>> slow;
  for (int i = 0; i < 1000; ++i) {
    auto s = std::make_unique<asio::ip::tcp::socket>(io);
    s->connect({asio::ip::make_address("127.0.0.1"), proxy.port()});
    asio::write(*s, asio::buffer(std::string_view{"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: "}));
    slow.push_back(std::move(s));
  }
  // A normal client is served at once, with all of them open.
  const auto started = steady::now();
  EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/")), "ok");
  EXPECT_LT(steady::now() - started, 1s);
  // The slow ones are told 408 and closed once the header timeout has passed.
  timeval tv{5, 0};
  ::setsockopt(slow.front()->native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string answer;
  std::error_code ec;
  asio::read(*slow.front(), asio::dynamic_buffer(answer), ec);
  EXPECT_EQ(answer.rfind("HTTP/1.1 408 Request Timeout\r\n", 0), 0U) << answer;
  EXPECT_EQ(backend.requests(), 1);
}

TEST(proxy, a_bounded_wrk_burst_is_served_without_errors) {
  testing::nginx_server nginx;
  proxy_fixture proxy{{nginx.port()}};
  const auto out = run("wrk -t1 -c16 -d1s " + proxy.url("/hello") + " 2>&1");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex{R"((\d+) requests in)"})) << out;
  EXPECT_GT(std::stoi(m[1]), 1000) << out;
  EXPECT_EQ(out.find("Non-2xx"), std::string::npos) << out;
  EXPECT_EQ(out.find("Socket errors"), std::string::npos) << out;
}

TEST(proxy, a_host_given_by_name_is_resolved_again_every_interval) {
  http_test_server backend;
  const std::string yaml = "workers: 2\n"
                           "listeners: [{port: 0}]\n"
                           "admin: {port: 0}\n"
                           "routes: [{cluster: named}]\n"
                           "clusters:\n"
                           "  - name: named\n"
                           "    endpoints: [\"localhost:" +
                           std::to_string(backend.port()) +
                           "\"]\n"
                           "    resolve_interval: 20ms\n";
  auto loaded = load_config(yaml, "named.yaml");
  ASSERT_TRUE(loaded.value);
  server proxy{*loaded.value};
  ASSERT_FALSE(proxy.start());
  const std::string admin = "http://127.0.0.1:" + std::to_string(proxy.admin_port());
  const std::string series = "tether_proxy_dns_resolutions_total{cluster=\"named\",endpoint="
                             "\"localhost:" +
                             std::to_string(backend.port()) + "\",result=\"ok\"} ";
  // Looked up at start and again every 20 ms: wait (bounded) for a third answer.
  const auto lookups = [&] {
    const auto text = run("curl -sS --max-time 5 " + admin + "/metrics");
    const auto at = text.find(series);
    return at == std::string::npos ? 0.0 : std::stod(text.substr(at + series.size()));
  };
  const auto give_up = steady::now() + 5s;
  while (lookups() < 3 && steady::now() < give_up) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_GE(lookups(), 3);
  const auto clusters = nlohmann::json::parse(run("curl -sS --max-time 5 " + admin + "/clusters"));
  const auto addresses = clusters["clusters"][0]["hosts"][0]["addresses"].dump();
  EXPECT_NE(addresses.find("127.0.0.1"), std::string::npos) << addresses;
  EXPECT_EQ(run("curl -sS --max-time 5 http://127.0.0.1:" +
                std::to_string(proxy.listener_ports().at(0)) + "/"),
            "ok");
  proxy.stop();
}

TEST(proxy, stopping_lets_requests_in_flight_finish) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  auto slow = std::async(std::launch::async,
                         [&] { return run("curl -sS --max-time 5 " + proxy.url("/slow")); });
  // Stop once the request has reached the backend.
  const auto give_up = steady::now() + 5s;
  while (backend.requests() == 0 && steady::now() < give_up) {
    std::this_thread::sleep_for(1ms);
  }
  proxy.get().stop();
  EXPECT_EQ(slow.get(), "slow");
  // Stopped: nothing listens any more.
  EXPECT_NE(run("curl -sS --max-time 2 " + proxy.url("/") + " 2>&1").find("Failed to connect"),
            std::string::npos);
}

TEST(proxy, writes_an_access_log_off_the_workers) {
  http_test_server backend;
  for (const std::string format : {"text", "json"}) {
    char name[] = "/tmp/tether-access-XXXXXX";
    ::close(::mkstemp(name));
    {
      proxy_fixture proxy{{backend.port()},
                          "log: {level: warn, format: " + format + ", access_log: " + name + "}\n",
                          true};
      EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/api/one?x=1")), "ok");
      run("curl -sS --max-time 5 " + proxy.url("/elsewhere"));
      proxy.get().stop(); // the access log's queue is written out by then
    }
    std::ifstream in{name};
    std::string first;
    std::string second;
    std::getline(in, first);
    std::getline(in, second);
    ::unlink(name);
    const auto upstream = "127.0.0.1:" + std::to_string(backend.port());
    if (format == "text") {
      EXPECT_NE(first.find("127.0.0.1 \"GET /api/one?x=1\" 200 "), std::string::npos) << first;
      EXPECT_NE(first.find("cluster=backend upstream=" + upstream), std::string::npos) << first;
      EXPECT_NE(second.find("\"GET /elsewhere\" 404 "), std::string::npos) << second;
    } else {
      const auto one = nlohmann::json::parse(first, nullptr, false);
      ASSERT_FALSE(one.is_discarded()) << first;
      EXPECT_EQ(one["method"], "GET");
      EXPECT_EQ(one["target"], "/api/one?x=1");
      EXPECT_EQ(one["status"], 200);
      EXPECT_EQ(one["upstream"], upstream);
      EXPECT_TRUE(one.contains("time") && one.contains("duration_ms"));
      const auto two = nlohmann::json::parse(second, nullptr, false);
      ASSERT_FALSE(two.is_discarded()) << second;
      EXPECT_EQ(two["status"], 404);
    }
  }
}

TEST(proxy, the_admin_listener_shows_clusters_config_and_readiness) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/")), "ok");
  const auto admin = "http://127.0.0.1:" + std::to_string(proxy.admin_port());
  EXPECT_EQ(run("curl -sS " + admin + "/ready"), "ready\n");
  const auto clusters = run("curl -sS " + admin + "/clusters");
  EXPECT_NE(clusters.find("\"address\": \"127.0.0.1:" + std::to_string(backend.port()) + "\""),
            std::string::npos)
      << clusters;
  EXPECT_NE(clusters.find("\"requests\": 1"), std::string::npos) << clusters;
  EXPECT_NE(run("curl -sS " + admin + "/config").find("\"name\": \"backend\""), std::string::npos);
  const auto metrics = run("curl -sS " + admin + "/metrics");
  for (const char* series : {"tether_proxy_downstream_connections_opened_total 1",
                             "tether_proxy_responses_total{class=\"2xx\",cluster=\"backend\"} 1",
                             "tether_proxy_request_duration_seconds_count{cluster=\"backend\"} 1",
                             "tether_pool_connection_create_seconds_count{cluster=\"backend\""}) {
    EXPECT_NE(metrics.find(series), std::string::npos) << series;
  }
}

// --- retries, budgets, breakers, outlier detection, health checks (issue 6) ---------------------

/// The value of the series whose line starts with `series` (name and labels) in /metrics, or -1.
double metric(const proxy_fixture& proxy, const std::string& series) {
  const auto text = run(
      "curl -sS --max-time 5 http://127.0.0.1:" + std::to_string(proxy.admin_port()) + "/metrics");
  const auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) {
    return -1;
  }
  return std::stod(text.substr(at + series.size() + 2));
}

/// The status line and X-Tether-Reason of a request with curl.
std::string status_of(const std::string& curl_args) {
  const auto out = run("curl -sS --max-time 10 -o /dev/null -D - " + curl_args);
  std::string line = out.substr(0, out.find("\r\n"));
  if (const auto r = out.find("X-Tether-Reason: "); r != std::string::npos) {
    line += " (" + out.substr(r + 17, out.find("\r\n", r) - r - 17) + ")";
  }
  return line;
}

TEST(proxy_resilience, a_failed_idempotent_request_is_retried_on_another_host) {
  http_test_server failing;
  http_test_server healthy;
  failing.set_fault(fault::status, -1, 503);
  proxy_fixture proxy{{failing.port(), healthy.port()},
                      "    retry: {retry_on: [gateway-error], num_retries: 2}\n"
                      "    breaker: off\n"};
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/r" + std::to_string(i))), "ok");
  }
  // Round robin sends every other request to the failing host first; each of those is retried
  // once, on the other host (a retry goes to a host not tried yet).
  EXPECT_EQ(failing.requests(), 5);
  EXPECT_EQ(healthy.requests(), 10);
  EXPECT_EQ(metric(proxy, "tether_proxy_retries_total{cluster=\"backend\",reason=\"http_status\"}"),
            5);
  const auto attempts_at = [&](const http_test_server& b) {
    return metric(proxy, "tether_proxy_upstream_requests_total{cluster=\"backend\",endpoint="
                         "\"127.0.0.1:" +
                             std::to_string(b.port()) + "\"}");
  };
  EXPECT_EQ(attempts_at(failing), 5);
  EXPECT_EQ(attempts_at(healthy), 10);
}

TEST(proxy_resilience, a_post_is_sent_once_unless_it_has_an_idempotency_key) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()},
                      "    retry: {retry_on: [5xx, reset], num_retries: 3, backoff: {base: 1ms, "
                      "max: 2ms}}\n"
                      "    breaker: off\n"};
  // A 503 to a POST is the answer: forwarded as it is, the POST never sent again.
  backend.set_fault(fault::status, -1, 503);
  EXPECT_EQ(status_of("-X POST -d order=1 " + proxy.url("/orders")),
            "HTTP/1.1 503 Failing On Purpose");
  EXPECT_EQ(backend.requests_with("POST"), 1);
  // A reset after the POST was sent: 502, still sent once.
  backend.set_fault(fault::reset, -1);
  EXPECT_EQ(status_of("-X POST -d order=2 " + proxy.url("/orders")),
            "HTTP/1.1 502 Bad Gateway (upstream closed the connection before answering)");
  EXPECT_EQ(backend.requests_with("POST"), 2);
  // With an Idempotency-Key the client says a second copy is harmless: 1 + 3 retries.
  backend.set_fault(fault::status, -1, 503);
  EXPECT_EQ(status_of("-X POST -H 'Idempotency-Key: k1' -d order=3 " + proxy.url("/orders")),
            "HTTP/1.1 503 Failing On Purpose");
  EXPECT_EQ(backend.requests_with("POST"), 6);
  // A GET with the same policy: retried, then healed on the second try.
  backend.set_fault(fault::status, 1, 503);
  EXPECT_EQ(status_of(proxy.url("/again")), "HTTP/1.1 200 OK");
}

TEST(proxy_resilience, a_retry_after_longer_than_the_per_try_timeout_is_honoured) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()},
                      "    retry: {retry_on: [5xx], num_retries: 1, per_try_timeout: 300ms}\n"
                      "    breaker: off\n"};
  // 503 with Retry-After: 1 (second); the per-try timeout of the attempt that got it does not
  // cut the wait short, and the retry is answered.
  backend.set_fault(fault::status, 1, 503, "1");
  const auto started = steady::now();
  EXPECT_EQ(status_of(proxy.url("/later")), "HTTP/1.1 200 OK");
  EXPECT_GE(steady::now() - started, 1s);
  EXPECT_EQ(backend.requests(), 2);
}

TEST(proxy_resilience, a_killed_backend_during_a_wrk_run_fails_no_idempotent_request) {
  auto doomed = std::make_unique<http_test_server>();
  http_test_server survivor;
  proxy_fixture proxy{{doomed->port(), survivor.port()},
                      "    retry: {retry_on: [connect-failure, refused, reset, gateway-error], "
                      "num_retries: 2}\n"};
  auto load = std::async(std::launch::async,
                         [&] { return run("wrk -t1 -c8 -d2s " + proxy.url("/") + " 2>&1"); });
  // Kill one backend once it has served some of the load: its connections close under requests
  // in flight, and new connections to it are refused.
  const auto give_up = steady::now() + 5s;
  while (doomed->requests() < 500 && steady::now() < give_up) {
    std::this_thread::sleep_for(1ms);
  }
  doomed.reset();
  const auto out = load.get();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex{R"((\d+) requests in)"})) << out;
  EXPECT_GT(std::stoi(m[1]), 1000) << out;
  EXPECT_EQ(out.find("Non-2xx"), std::string::npos)
      << out
      << run("curl -sS http://127.0.0.1:" + std::to_string(proxy.admin_port()) +
             "/metrics | grep -E 'overflow|retries_total|errors_total|exhausted'");
  EXPECT_EQ(out.find("Socket errors"), std::string::npos) << out;
  EXPECT_GT(metric(proxy, "tether_proxy_retries_total{cluster=\"backend\",reason=\"refused\"}") +
                metric(proxy, "tether_proxy_retries_total{cluster=\"backend\",reason=\"reset\"}"),
            0);
}

TEST(proxy_resilience, a_breaker_opens_half_opens_and_closes_as_configured) {
  manual_clock clock;
  http_test_server backend;
  proxy_fixture proxy{{backend.port()},
                      "    breaker: {window: 4, minimum_calls: 4, failure_rate_threshold: 50, "
                      "wait_in_open: 10s, half_open_calls: 2}\n",
                      false,
                      &clock};
  const std::string state = "tether_breaker_state{cluster=\"backend\",endpoint=\"127.0.0.1:" +
                            std::to_string(backend.port()) + "\",state=";
  EXPECT_EQ(metric(proxy, state + "\"closed\"}"), 1);
  backend.set_fault(fault::status, 4, 503);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(status_of(proxy.url("/")), "HTTP/1.1 503 Failing On Purpose");
  }
  EXPECT_EQ(metric(proxy, state + "\"open\"}"), 1);
  // Open: refused at once with a reason, costing the backend nothing.
  EXPECT_EQ(status_of(proxy.url("/")),
            "HTTP/1.1 503 Service Unavailable (circuit breaker open for every host)");
  EXPECT_EQ(backend.requests(), 4);
  EXPECT_EQ(metric(proxy, "tether_proxy_errors_total{cause=\"circuit_open\"}"), 1);
  // After the wait in open, the next request is a trial: half-open, then closed after two.
  clock.advance(10s);
  EXPECT_EQ(status_of(proxy.url("/")), "HTTP/1.1 200 OK");
  EXPECT_EQ(metric(proxy, state + "\"half_open\"}"), 1);
  EXPECT_EQ(status_of(proxy.url("/")), "HTTP/1.1 200 OK");
  EXPECT_EQ(metric(proxy, state + "\"closed\"}"), 1);
  EXPECT_EQ(backend.requests(), 6);
}

TEST(proxy_resilience, one_client_hitting_a_url_that_answers_500_does_not_open_the_breaker) {
  // A 500 is most often about the request: by default the breaker counts what says the host is
  // sick (connect failures, resets, timeouts, 502-504), so one client's requests to a broken URL
  // do not take the host from everyone. `failures: 5xx` counts it on purpose.
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  const std::string state = "tether_breaker_state{cluster=\"backend\",endpoint=\"127.0.0.1:" +
                            std::to_string(backend.port()) + "\",state=";
  backend.set_fault(fault::status, 30, 500);
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(status_of(proxy.url("/broken")), "HTTP/1.1 500 Failing On Purpose") << i;
  }
  EXPECT_EQ(metric(proxy, state + "\"closed\"}"), 1);
  EXPECT_EQ(status_of(proxy.url("/fine")), "HTTP/1.1 200 OK");

  http_test_server counted;
  proxy_fixture opted_in{{counted.port()}, "    breaker: {failures: 5xx}\n"};
  counted.set_fault(fault::status, 30, 500);
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(status_of(opted_in.url("/broken")), "HTTP/1.1 500 Failing On Purpose") << i;
  }
  EXPECT_EQ(status_of(opted_in.url("/fine")),
            "HTTP/1.1 503 Service Unavailable (circuit breaker open for every host)");
}

TEST(proxy_resilience, a_request_on_a_connection_the_upstream_closed_is_sent_again_once) {
  // The kept-alive race: the upstream closes an idle connection just as a request is sent on
  // it, before any byte of response. An idempotent request goes again on a new connection (not
  // a retry: the default policy retries connect failures only); a POST is never sent twice.
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  ASSERT_EQ(status_of(proxy.url("/first")), "HTTP/1.1 200 OK"); // a connection is now pooled
  backend.set_fault(fault::drop_reused, 1);
  EXPECT_EQ(status_of(proxy.url("/again")), "HTTP/1.1 200 OK");
  EXPECT_EQ(backend.requests_to("/again"), 2); // received on the closed one, then answered
  EXPECT_EQ(backend.connections(), 2);
  EXPECT_EQ(metric(proxy, "tether_proxy_stale_connection_resends_total{cluster=\"backend\"}"), 1);
  EXPECT_EQ(metric(proxy, "tether_proxy_retries_total{cluster=\"backend\",reason=\"reset\"}"), 0);

  backend.set_fault(fault::drop_reused, 1);
  const auto post = status_of("-X POST -d x " + proxy.url("/post"));
  EXPECT_EQ(post.substr(0, 21), "HTTP/1.1 502 Bad Gate") << post;
  EXPECT_EQ(backend.requests_with("POST"), 1);
}

TEST(proxy, an_early_answer_stops_the_upload) {
  // RFC 9112 9.3: a sender watches for a response while it sends the body. A backend that
  // answers 401 at once and stops reading: the client gets the 401 at once, not a 504 at the
  // request timeout with megabytes uploaded for nothing.
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}, "    request_timeout: 30s\n"};
  const auto script = "import socket, threading\n"
                      "s = socket.create_connection(('127.0.0.1', " +
                      std::to_string(proxy.port()) +
                      "))\n"
                      "s.sendall(b'POST /reject-early HTTP/1.1\\r\\nHost: a\\r\\n"
                      "Content-Length: 20971520\\r\\n\\r\\n')\n"
                      "def up():\n"
                      "    try:\n"
                      "        for _ in range(320): s.sendall(b'x' * 65536)\n"
                      "    except OSError: pass\n"
                      "threading.Thread(target=up, daemon=True).start()\n"
                      "s.settimeout(10)\n"
                      "got = b''\n"
                      "try:\n"
                      "    while b'\\r\\n\\r\\n' not in got:\n"
                      "        d = s.recv(4096)\n"
                      "        if not d: break\n"
                      "        got += d\n"
                      "except OSError as e: print(e)\n"
                      "print(got.split(b'\\r\\n')[0].decode())\n";
  const auto out = run("python3 -c \"" + script + "\"");
  EXPECT_EQ(out, "HTTP/1.1 401 Unauthorized\n");
  EXPECT_EQ(backend.requests_to("/reject-early"), 0); // answered at its head, never completed
}

TEST(proxy, an_expectation_goes_upstream_so_a_refused_body_is_never_sent) {
  // Expect: 100-continue is forwarded with a streamed body: the upstream's 100 reaches the
  // client, and a refusal (nginx's 413 past client_max_body_size, a 401) costs no upload.
  testing::nginx_server nginx{"    location = /upload { client_max_body_size 1k; return 200; }\n"};
  http_test_server backend;
  proxy_fixture to_nginx{{nginx.port()}};
  proxy_fixture to_backend{{backend.port()}};
  char name[] = "/tmp/tether-upload-XXXXXX";
  const int fd = ::mkstemp(name);
  ASSERT_EQ(::ftruncate(fd, 20 * 1024 * 1024), 0);
  ::close(fd);
  const auto upload = [&](const std::string& url) {
    return run("curl -sS --max-time 10 -H 'Expect: 100-continue' --data-binary @" +
               std::string{name} + " -o /dev/null -w '%{http_code} %{size_upload}' " + url);
  };
  EXPECT_EQ(upload(to_nginx.url("/upload")), "413 0");
  EXPECT_EQ(upload(to_backend.url("/reject-early")), "401 0");
  // An upstream that says 100: the body flows through, echoed back whole.
  const auto echoed =
      run("curl -sS --max-time 10 -H 'Expect: 100-continue' --data-binary @" + std::string{name} +
          " -o /dev/null -w '%{http_code} %{size_download}' " + to_backend.url("/echo"));
  ::unlink(name);
  EXPECT_EQ(echoed, "200 20971520");
}

TEST(proxy_resilience, outlier_detection_ejects_a_failing_host) {
  manual_clock clock;
  http_test_server failing;
  http_test_server healthy;
  failing.set_fault(fault::status, -1, 503);
  proxy_fixture proxy{{failing.port(), healthy.port()},
                      "    breaker: off\n"
                      "    outlier_detection: {consecutive_5xx: 3, base_ejection_time: 30s, "
                      "max_ejection_percent: 50}\n",
                      false,
                      &clock};
  int failures = 0;
  for (int i = 0; i < 20; ++i) {
    failures += status_of(proxy.url("/")) != "HTTP/1.1 200 OK" ? 1 : 0;
  }
  // Three 5xx in a row eject it: the rest go to the healthy host.
  EXPECT_EQ(failures, 3);
  EXPECT_EQ(failing.requests(), 3);
  EXPECT_EQ(
      metric(proxy,
             "tether_proxy_outlier_ejections_total{cluster=\"backend\",endpoint=\"127.0.0.1:" +
                 std::to_string(failing.port()) + "\"}"),
      1);
  const auto clusters = nlohmann::json::parse(
      run("curl -sS --max-time 5 http://127.0.0.1:" + std::to_string(proxy.admin_port()) +
          "/clusters"));
  EXPECT_EQ(clusters["clusters"][0]["hosts"][0]["ejected"], true);
  EXPECT_EQ(clusters["clusters"][0]["hosts"][1]["ejected"], false);
}

TEST(proxy_resilience, an_unhealthy_host_gets_no_traffic_until_it_passes_again) {
  http_test_server sick;
  http_test_server well;
  proxy_fixture proxy{{sick.port(), well.port()},
                      "    health_check: {type: http, path: /health, interval: 20ms, jitter: 0s, "
                      "timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 2}\n"};
  const auto health_of = [&](int host) {
    const auto j = nlohmann::json::parse(run("curl -sS --max-time 5 http://127.0.0.1:" +
                                             std::to_string(proxy.admin_port()) + "/clusters"));
    return j["clusters"][0]["hosts"][static_cast<std::size_t>(host)]["health"].get<std::string>();
  };
  const auto wait_for = [&](int host, const std::string& want) {
    const auto give_up = steady::now() + 5s;
    while (health_of(host) != want && steady::now() < give_up) {
      std::this_thread::sleep_for(5ms);
    }
    return health_of(host);
  };
  EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/") + " " + proxy.url("/")), "okok");
  sick.set_fault(fault::status, -1, 503);
  ASSERT_EQ(wait_for(0, "unhealthy"), "unhealthy");
  const std::string failed_checks =
      "tether_proxy_health_checks_total{cluster=\"backend\",endpoint=\"127.0.0.1:" +
      std::to_string(sick.port()) + "\",result=\"failed\"}";
  const int before = sick.requests();
  const double checks_before = metric(proxy, failed_checks);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/")), "ok");
  }
  // Only health checks reach it now: what it received is what the proxy counted as checks (one
  // more at most: a check received but not yet counted), none of the ten requests.
  const int received = sick.requests() - before;
  const double checks = metric(proxy, failed_checks) - checks_before;
  EXPECT_LE(received, checks + 1) << received << " requests, " << checks << " checks";
  EXPECT_EQ(metric(proxy, "tether_proxy_host_healthy{cluster=\"backend\",endpoint=\"127.0.0.1:" +
                              std::to_string(sick.port()) + "\"}"),
            0);
  // Its pooled connection (from the two requests before) was closed when it went unhealthy.
  EXPECT_GE(metric(proxy, "tether_pool_connections_closed_total{cluster=\"backend\",endpoint="
                          "\"127.0.0.1:" +
                              std::to_string(sick.port()) + "\",reason=\"evicted\",worker=\"0\"}"),
            1);
  sick.heal();
  EXPECT_EQ(wait_for(0, "healthy"), "healthy");
  EXPECT_GT(
      metric(proxy, "tether_proxy_health_checks_total{cluster=\"backend\",endpoint=\"127.0.0.1:" +
                        std::to_string(sick.port()) + "\",result=\"failed\"}"),
      1);
}

/// A host's field in /clusters (its index in the cluster's endpoint list).
std::string host_field(const proxy_fixture& proxy, int host, const std::string& field) {
  const auto j = nlohmann::json::parse(run("curl -sS --max-time 5 http://127.0.0.1:" +
                                           std::to_string(proxy.admin_port()) + "/clusters"));
  return j["clusters"][0]["hosts"][static_cast<std::size_t>(host)][field].dump();
}

/// Waits (5 s bound) for a host's field in /clusters to read `want`; returns what it read last.
std::string wait_for_field(const proxy_fixture& proxy, int host, const std::string& field,
                           const std::string& want) {
  const auto give_up = steady::now() + 5s;
  while (host_field(proxy, host, field) != want && steady::now() < give_up) {
    std::this_thread::sleep_for(5ms);
  }
  return host_field(proxy, host, field);
}

TEST(proxy_resilience, a_health_checked_host_gets_traffic_once_its_first_check_passes) {
  http_test_server slow;
  http_test_server quick;
  slow.set_fault(fault::stall, 1); // its first request, the first health check, never answered
  proxy_fixture proxy{{slow.port(), quick.port()},
                      "    health_check: {type: http, path: /health, interval: 20ms, jitter: 0s, "
                      "timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 2}\n"};
  ASSERT_EQ(wait_for_field(proxy, 1, "health", "\"healthy\""), "\"healthy\"");
  ASSERT_EQ(host_field(proxy, 0, "health"), "\"unchecked\"");
  const std::string ready = "curl -s --max-time 5 -w ' %{http_code}' http://127.0.0.1:" +
                            std::to_string(proxy.admin_port()) + "/ready";
  EXPECT_EQ(run(ready), "initializing: first health checks pending\n 503");
  EXPECT_EQ(metric(proxy, "tether_proxy_host_healthy{cluster=\"backend\",endpoint=\"127.0.0.1:" +
                              std::to_string(slow.port()) + "\"}"),
            0);
  // Until its check says anything, the unchecked host gets none of the traffic.
  EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/a") + " " + proxy.url("/b") + " " +
                proxy.url("/c") + " " + proxy.url("/d")),
            "okokokok");
  EXPECT_EQ(quick.requests_to("/a") + quick.requests_to("/b") + quick.requests_to("/c") +
                quick.requests_to("/d"),
            4);
  // The stalled check times out (a failure), the next ones pass: in service after two.
  EXPECT_EQ(wait_for_field(proxy, 0, "health", "\"healthy\""), "\"healthy\"");
  EXPECT_EQ(run(ready), "ready\n 200");
  EXPECT_GE(metric(proxy, "tether_proxy_health_checks_total{cluster=\"backend\",endpoint="
                          "\"127.0.0.1:" +
                              std::to_string(slow.port()) + "\",result=\"failed\"}"),
            1);
}

TEST(proxy_resilience, a_passing_health_check_brings_back_an_ejected_host) {
  manual_clock clock; // the ejection's own 300 s never run out in this test
  http_test_server flaky;
  http_test_server steady_host;
  proxy_fixture proxy{{flaky.port(), steady_host.port()},
                      "    breaker: off\n"
                      "    outlier_detection: {consecutive_5xx: 3, base_ejection_time: 300s, "
                      "max_ejection_percent: 50}\n"
                      "    health_check: {type: http, path: /health, interval: 20ms, jitter: 0s, "
                      "timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 1000}\n",
                      false,
                      &clock};
  ASSERT_EQ(wait_for_field(proxy, 0, "health", "\"healthy\""), "\"healthy\"");
  ASSERT_EQ(wait_for_field(proxy, 1, "health", "\"healthy\""), "\"healthy\"");
  flaky.set_fault(fault::status, -1, 503); // its health checks fail too, below the threshold
  const std::string ejections =
      "tether_proxy_outlier_ejections_total{cluster=\"backend\",endpoint=\"127.0.0.1:" +
      std::to_string(flaky.port()) + "\"}";
  for (int i = 0; i < 20 && metric(proxy, ejections) < 1; ++i) {
    run("curl -sS --max-time 5 " + proxy.url("/"));
  }
  ASSERT_EQ(metric(proxy, ejections), 1);
  ASSERT_EQ(host_field(proxy, 0, "ejected"), "true");
  flaky.heal();
  // The next check passes and brings it back, 300 s before its ejection would end.
  EXPECT_EQ(wait_for_field(proxy, 0, "ejected", "false"), "false");
  const int before = flaky.requests_to("/back");
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/back")), "ok");
  }
  EXPECT_EQ(flaky.requests_to("/back") - before, 2) << "round robin over both hosts again";
}

TEST(proxy_resilience, past_a_cluster_threshold_requests_fail_fast) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}, "    circuit_breakers: {max_requests: 1}\n"};
  auto slow = std::async(std::launch::async,
                         [&] { return run("curl -sS --max-time 5 " + proxy.url("/slow")); });
  const auto give_up = steady::now() + 5s;
  while (backend.requests() == 0 && steady::now() < give_up) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(status_of(proxy.url("/")),
            "HTTP/1.1 503 Service Unavailable (cluster request limit reached)");
  EXPECT_EQ(slow.get(), "slow");
  EXPECT_EQ(backend.requests(), 1);
  EXPECT_EQ(metric(proxy, "tether_proxy_overflow_total{cluster=\"backend\",resource=\"requests\"}"),
            1);
  EXPECT_EQ(metric(proxy, "tether_limit_remaining{cluster=\"backend\",resource=\"requests\"}"),
            1); // max 1, none in flight now
}

TEST(proxy_resilience, requests_at_max_connections_wait_for_a_connection_any_worker_gives_back) {
  http_test_server backend;
  // Two workers, one connection for the whole cluster: six clients at once (spread over both
  // workers by the kernel) all get their answer, one after another on that connection or on
  // one a worker closed to give its unit over, instead of five 503s.
  const std::string yaml = "workers: 2\n"
                           "drain_timeout: 5s\n"
                           "listeners: [{name: main, address: 127.0.0.1, port: 0}]\n"
                           "admin: {address: 127.0.0.1, port: 0}\n"
                           "routes: [{path_prefix: /, cluster: backend}]\n"
                           "clusters:\n"
                           "  - name: backend\n"
                           "    endpoints: [\"127.0.0.1:" +
                           std::to_string(backend.port()) +
                           "\"]\n"
                           "    circuit_breakers: {max_connections: 1}\n"
                           "    pool: {acquire_timeout: 10s}\n"
                           "    request_timeout: 20s\n";
  proxy_fixture proxy{yaml, nullptr};
  std::string urls;
  for (int i = 0; i < 6; ++i) {
    urls += " " + proxy.url("/slow");
  }
  const auto codes = run("curl -s --parallel --parallel-immediate --parallel-max 6 --max-time 15 "
                         "-o /dev/null -o /dev/null -o /dev/null -o /dev/null -o /dev/null "
                         "-o /dev/null -w '%{http_code}\\n'" +
                         urls);
  EXPECT_EQ(codes, "200\n200\n200\n200\n200\n200\n");
  EXPECT_EQ(backend.requests(), 6);
  EXPECT_EQ(metric(proxy, "tether_proxy_overflow_total{cluster=\"backend\",resource="
                          "\"connections\"}"),
            0);
  EXPECT_EQ(metric(proxy, "tether_limit_remaining{cluster=\"backend\",resource=\"connections\"}"),
            0)
      << "one connection, kept for the next request";
}

} // namespace
} // namespace tether::proxy
