// Tunnels through tether proxy: tcp listeners relaying raw TCP to a cluster's hosts (an echo
// server of the test's, and PostgreSQL with psql and pgbench), with connect retries on another
// host, the idle timeout and the tunnels' counters; CONNECT to the ports a route allows (curl
// --proxytunnel to nginx over TLS, through a plain or a TLS listener, raw requests); WebSocket
// Upgrades between a real client and server (python3-websockets), over ws:// and wss://.
#include "tether/proxy/server.hpp"

#include <gtest/gtest.h>

#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <regex>
#include <string>
#include <thread>

#include <asio/buffers_iterator.hpp>
#include <asio/read_until.hpp>
#include <asio/streambuf.hpp>

#include "child_server.hpp"
#include "http_test_server.hpp"
#include "loopback_server.hpp"
#include "nginx_server.hpp"
#include "pg_server.hpp"
#include "proxy_fixture.hpp"
#include "test_ca.hpp"

namespace tether::proxy {
namespace {

using testing::run;

/// A TCP server on its own thread that sends back what it reads and closes after the client's
/// EOF, counting the connections it accepted.
struct echo_server : testing::loopback_server {
  echo_server() : loopback_server{behaviour::echo} {}
};

/// A port nothing listens on (bound, then let go).
std::uint16_t closed_port() {
  return testing::free_port();
}

/// One worker, a tcp listener "db" to cluster "echo" of `endpoints`, and `extra` in the
/// cluster's entry.
std::string tcp_config(const std::vector<std::uint16_t>& endpoints,
                       const std::string& listener_extra = "",
                       const std::string& cluster_extra = "") {
  std::string list;
  for (const auto p : endpoints) {
    list += (list.empty() ? "" : ", ") + std::string{"\"127.0.0.1:"} + std::to_string(p) + "\"";
  }
  return "workers: 1\n"
         "drain_timeout: 2s\n"
         "listeners:\n"
         "  - {name: db, address: 127.0.0.1, port: 0, tcp: {cluster: echo" +
         listener_extra +
         "}}\n"
         "admin: {address: 127.0.0.1, port: 0}\n"
         "clusters:\n"
         "  - name: echo\n"
         "    endpoints: [" +
         list + "]\n" + cluster_extra;
}

std::string metrics_of(testing::proxy_fixture& proxy) {
  return run("curl -sS http://127.0.0.1:" + std::to_string(proxy.admin_port()) + "/metrics");
}

/// Sends `bytes`, half-closes, and reads until the peer closes (5 s bound).
std::string send_and_read(std::uint16_t port, const std::string& bytes) {
  asio::io_context io;
  asio::ip::tcp::socket s{io};
  std::error_code ec;
  s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) {
    return "connect: " + ec.message();
  }
  asio::write(s, asio::buffer(bytes), ec);
  s.shutdown(asio::socket_base::shutdown_send, ec);
  const timeval bound{5, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
  std::string out;
  std::array<char, 4096> buffer{};
  for (;;) {
    const auto n = ::recv(s.native_handle(), buffer.data(), buffer.size(), 0);
    if (n <= 0) {
      return out;
    }
    out.append(buffer.data(), static_cast<std::size_t>(n));
  }
}

TEST(proxy_tunnel, a_tcp_listener_relays_bytes_both_ways_and_counts_them) {
  echo_server echo;
  testing::proxy_fixture proxy{tcp_config({echo.port()}), nullptr};
  EXPECT_EQ(send_and_read(proxy.port(), "hello tether"), "hello tether");
  {
    // Bytes come back while the client's side is still open: the relay is not store-and-forward.
    asio::io_context io;
    asio::ip::tcp::socket s{io};
    s.connect({asio::ip::make_address("127.0.0.1"), proxy.port()});
    asio::write(s, asio::buffer(std::string_view{"ping\n"}));
    std::string got(5, '\0');
    const timeval bound{5, 0};
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
    std::error_code ec;
    asio::read(s, asio::buffer(got), ec);
    EXPECT_EQ(got, "ping\n") << ec.message();
  }
  const auto m = metrics_of(proxy);
  EXPECT_NE(m.find("tether_proxy_tunnels_total{kind=\"tcp\"} 2"), std::string::npos) << m;
  EXPECT_NE(m.find("tether_proxy_tunnel_bytes_total{direction=\"upstream\",kind=\"tcp\"} 17"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("tether_proxy_tunnel_bytes_total{direction=\"downstream\",kind=\"tcp\"} 17"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("tether_proxy_upstream_requests_total{cluster=\"echo\",endpoint=\"127.0.0.1:" +
                   std::to_string(echo.port()) + "\"} 2"),
            std::string::npos)
      << m;
  // Each tunnel took its connection out of the pool: closed there as detached, not broken.
  const auto closed =
      "tether_pool_connections_closed_total{cluster=\"echo\",endpoint=\"127.0.0.1:" +
      std::to_string(echo.port()) + "\",reason=\"";
  EXPECT_NE(m.find(closed + "detached\",worker=\"0\"} 2"), std::string::npos) << m;
  EXPECT_NE(m.find(closed + "broken\",worker=\"0\"} 0"), std::string::npos) << m;
  EXPECT_EQ(echo.accepted(), 2);
}

TEST(proxy_tunnel, a_tcp_listener_terminates_tls_and_relays_the_deciphered_bytes) {
  echo_server echo;
  const auto& ca = testing::test_ca::get();
  testing::proxy_fixture proxy{
      tcp_config({echo.port()}, "}, tls: {cert_file: " + ca.path("server.pem") +
                                    ", key_file: " + ca.path("server.key")),
      nullptr};
  // A TLS client sends and reads the whole echo back (deciphered on the way in, enciphered on
  // the way out).
  const auto out = run("/usr/bin/python3 -c \"import socket, ssl\n"
                       "c = ssl.create_default_context(cafile='" +
                       ca.path("ca.pem") +
                       "')\n"
                       "s = c.wrap_socket(socket.create_connection(('127.0.0.1', " +
                       std::to_string(proxy.port()) +
                       "), timeout=5), server_hostname='localhost')\n"
                       "s.sendall(b'over tls ' * 1000)\n"
                       "got = b''\n"
                       "while len(got) < 9000:\n"
                       "    d = s.recv(65536)\n"
                       "    if not d: break\n"
                       "    got += d\n"
                       "print(len(got), got == b'over tls ' * 1000)\n\" 2>&1");
  EXPECT_EQ(out, "9000 True\n");
  const auto m = metrics_of(proxy);
  EXPECT_NE(m.find("tether_proxy_tunnel_bytes_total{direction=\"upstream\",kind=\"tcp\"} 9000"),
            std::string::npos)
      << m;
}

TEST(proxy_tunnel, a_tcp_listener_to_a_tls_cluster_makes_the_tls_to_its_hosts) {
  const auto& ca = testing::test_ca::get();
  testing::nginx_server origin{
      "", testing::nginx_server::tls_settings{ca.path("server.pem"), ca.path("server.key")}};
  testing::proxy_fixture proxy{
      tcp_config({origin.port()}, "",
                 "    tls: {ca_file: " + ca.path("ca.pem") + ", server_name: localhost}\n"),
      nullptr};
  // Plain HTTP in, HTTPS out: the client's bytes enciphered by tether toward nginx.
  const auto got = send_and_read(proxy.port(), "GET /hello HTTP/1.1\r\nHost: localhost\r\n"
                                               "Connection: close\r\n\r\n");
  EXPECT_EQ(got.substr(0, 15), "HTTP/1.1 200 OK") << got;
  EXPECT_NE(got.find("\r\n\r\nhello\n"), std::string::npos) << got;
  const auto tls = origin.tls_log(1);
  ASSERT_EQ(tls.size(), 1U);
  EXPECT_EQ(tls[0].server_name, "localhost");
}

TEST(proxy_tunnel, a_host_that_refuses_is_passed_over_for_another_and_its_breaker_told) {
  echo_server echo;
  const auto dead = closed_port();
  // Round robin over a dead host and a live one, one retry on a refused connect (the default
  // policy): every connection gets through.
  testing::proxy_fixture proxy{tcp_config({dead, echo.port()}), nullptr};
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(send_and_read(proxy.port(), "n" + std::to_string(i)), "n" + std::to_string(i));
  }
  EXPECT_EQ(echo.accepted(), 6);
  const auto m = metrics_of(proxy);
  EXPECT_NE(m.find("tether_proxy_retries_total{cluster=\"echo\",reason=\"refused\"} 3"),
            std::string::npos)
      << m;
}

/// The value of `series` (a whole series name with its labels) in `metrics`, or -1.
double value_of(const std::string& metrics, const std::string& series) {
  const auto at = metrics.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stod(metrics.substr(at + series.size() + 2));
}

TEST(proxy_tunnel, a_tcp_health_check_keeps_a_dead_host_out_of_the_tunnels) {
  echo_server echo;
  const auto dead = closed_port();
  testing::proxy_fixture proxy{
      tcp_config({dead, echo.port()}, "",
                 "    health_check: {type: tcp, interval: 100ms, timeout: 1s, "
                 "healthy_threshold: 1, unhealthy_threshold: 1}\n"),
      nullptr};
  const auto healthy = [&](std::uint16_t port) {
    return value_of(metrics_of(proxy),
                    "tether_proxy_host_healthy{cluster=\"echo\",endpoint=\"127.0.0.1:" +
                        std::to_string(port) + "\"}");
  };
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds{5};
  while ((healthy(echo.port()) != 1 || healthy(dead) != 0) &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  ASSERT_EQ(healthy(echo.port()), 1);
  ASSERT_EQ(healthy(dead), 0);
  // Round robin would send every other connection to the dead host (then retry it elsewhere):
  // with it checked out, none is tried there.
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(send_and_read(proxy.port(), "n" + std::to_string(i)), "n" + std::to_string(i));
  }
  const auto m = metrics_of(proxy);
  EXPECT_EQ(value_of(m, "tether_proxy_retries_total{cluster=\"echo\",reason=\"refused\"}"), 0) << m;
  EXPECT_GE(echo.accepted(), 6); // the tunnels, and the checks' connections
}

TEST(proxy_tunnel, outlier_detection_ejects_a_host_whose_connects_fail) {
  echo_server echo;
  const auto dead = closed_port();
  testing::proxy_fixture proxy{
      tcp_config({dead, echo.port()}, "",
                 "    outlier_detection: {consecutive_gateway_failure: 2, interval: 1h, "
                 "base_ejection_time: 1h}\n"),
      nullptr};
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(send_and_read(proxy.port(), "n" + std::to_string(i)), "n" + std::to_string(i));
  }
  EXPECT_EQ(echo.accepted(), 10);
  // Two refused connects (each retried on the live host) eject it; no connection goes there
  // after, where round robin alone would have sent five of the ten.
  const auto m = metrics_of(proxy);
  EXPECT_EQ(value_of(m, "tether_proxy_retries_total{cluster=\"echo\",reason=\"refused\"}"), 2) << m;
  EXPECT_EQ(
      value_of(m, "tether_proxy_outlier_ejections_total{cluster=\"echo\",endpoint=\"127.0.0.1:" +
                      std::to_string(dead) + "\"}"),
      1)
      << m;
}

TEST(proxy_tunnel, max_connections_counts_tunnels_and_one_over_waits_as_pending) {
  echo_server echo;
  testing::proxy_fixture proxy{
      tcp_config({echo.port()}, "",
                 "    circuit_breakers: {max_connections: 1, max_pending_requests: 1}\n"
                 "    pool: {acquire_timeout: 10s}\n"),
      nullptr};
  asio::io_context io;
  const auto open = [&] {
    auto s = std::make_unique<asio::ip::tcp::socket>(io);
    s->connect({asio::ip::make_address("127.0.0.1"), proxy.port()});
    const timeval bound{5, 0};
    ::setsockopt(s->native_handle(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
    return s;
  };
  const auto echoes = [](asio::ip::tcp::socket& s, const std::string& text) {
    std::error_code ec;
    asio::write(s, asio::buffer(text), ec);
    std::string got(text.size(), '\0');
    asio::read(s, asio::buffer(got), ec);
    return ec ? "error: " + ec.message() : got;
  };
  auto first = open();
  ASSERT_EQ(echoes(*first, "one"), "one"); // the tunnel holds the cluster's one connection
  auto second = open();                    // waits as pending for it
  asio::write(*second, asio::buffer(std::string_view{"two"}));
  const std::string pending =
      "tether_pool_pending_acquires{cluster=\"echo\",endpoint=\"127.0.0.1:" +
      std::to_string(echo.port()) + "\",worker=\"0\"}";
  const auto wait_until = std::chrono::steady_clock::now() + std::chrono::seconds{5};
  while (value_of(metrics_of(proxy), pending) != 1 &&
         std::chrono::steady_clock::now() < wait_until) {
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  ASSERT_EQ(value_of(metrics_of(proxy), pending), 1);
  const auto overflowed = [&] {
    return value_of(metrics_of(proxy),
                    "tether_proxy_overflow_total{cluster=\"echo\",resource=\"pending_requests\"}");
  };
  // A third finds the pending slot taken: closed at once, counted.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds{5};
  bool closed = false;
  while (overflowed() < 1 && std::chrono::steady_clock::now() < give_up) {
    EXPECT_EQ(testing::raw_exchange(proxy.port(), "three", &closed), "");
    EXPECT_TRUE(closed);
  }
  EXPECT_EQ(overflowed(), 1);
  EXPECT_EQ(echo.accepted(), 1);
  // The first tunnel ends: its unit goes to the one pending, whose bytes then go through.
  first.reset();
  std::string got(3, '\0');
  std::error_code ec;
  asio::read(*second, asio::buffer(got), ec);
  EXPECT_EQ(got, "two") << ec.message();
  EXPECT_EQ(echo.accepted(), 2);
}

TEST(proxy_tunnel, no_host_to_connect_to_closes_the_client_and_counts_a_connect_failure) {
  testing::proxy_fixture proxy{tcp_config({closed_port()}), nullptr};
  bool closed = false;
  EXPECT_EQ(testing::raw_exchange(proxy.port(), "hello", &closed), "");
  EXPECT_TRUE(closed);
  const auto m = metrics_of(proxy);
  EXPECT_NE(m.find("tether_proxy_errors_total{cause=\"connect_failure\"} 1"), std::string::npos)
      << m;
}

TEST(proxy_tunnel, a_tunnel_idle_for_its_timeout_is_closed_and_counted) {
  echo_server echo;
  testing::proxy_fixture proxy{tcp_config({echo.port()}, ", idle_timeout: 300ms"), nullptr};
  bool closed = false;
  // raw_exchange reads until the peer closes (5 s at most): the idle timeout closes it first.
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(testing::raw_exchange(proxy.port(), "x", &closed), "x");
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds{4});
  const auto m = metrics_of(proxy);
  EXPECT_NE(m.find("tether_proxy_tunnel_idle_timeouts_total{kind=\"tcp\"} 1"), std::string::npos)
      << m;
  EXPECT_NE(m.find("tether_proxy_tunnels_active{kind=\"tcp\"} 0"), std::string::npos) << m;
}

TEST(proxy_tunnel, postgresql_through_a_tcp_listener_with_psql_and_pgbench) {
  if (!testing::pg_server::find_binaries()) {
    GTEST_SKIP() << "PostgreSQL is not installed (scripts/setup.sh installs it)";
  }
  testing::pg_server pg;
  testing::proxy_fixture proxy{tcp_config({pg.port()}), nullptr};
  const auto bin = pg.binaries().string();
  const std::string to = " -h 127.0.0.1 -p " + std::to_string(proxy.port()) + " -U postgres ";
  EXPECT_EQ(run(bin + "/psql" + to + "-d postgres -Atc 'select 6 * 7' 2>&1"), "42\n");
  const auto init = run(bin + "/pgbench" + to + "-i -s 1 postgres 2>&1");
  EXPECT_NE(init.find("done"), std::string::npos) << init;
  // Four clients, a connection each per transaction (-C): 200 tunnels opened and closed.
  const auto bench = run(bin + "/pgbench" + to + "-C -c 4 -t 50 -S postgres 2>&1");
  EXPECT_NE(bench.find("number of transactions actually processed: 200/200"), std::string::npos)
      << bench;
  EXPECT_NE(bench.find("number of failed transactions: 0"), std::string::npos) << bench;
  const auto m = metrics_of(proxy);
  EXPECT_NE(m.find("tether_proxy_tunnels_active{kind=\"tcp\"} 0"), std::string::npos) << m;
}

/// An HTTP listener "main" whose route lets CONNECT reach `host` on `ports`, to the cluster
/// "tunnel" of `endpoints`.
std::string connect_config(const std::string& host, const std::vector<std::uint16_t>& ports,
                           const std::vector<std::uint16_t>& endpoints,
                           const std::string& listener_extra = "") {
  std::string allowed;
  for (const auto p : ports) {
    allowed += (allowed.empty() ? "" : ", ") + std::to_string(p);
  }
  std::string list;
  for (const auto p : endpoints) {
    list += (list.empty() ? "" : ", ") + std::string{"\"127.0.0.1:"} + std::to_string(p) + "\"";
  }
  return "workers: 1\n"
         "drain_timeout: 2s\n"
         "listeners: [{name: main, address: 127.0.0.1, port: 0" +
         listener_extra +
         "}]\n"
         "admin: {address: 127.0.0.1, port: 0}\n"
         "routes:\n"
         "  - {host: " +
         host + ", connect: {ports: [" + allowed +
         "]}, cluster: tunnel}\n"
         "clusters:\n"
         "  - name: tunnel\n"
         "    endpoints: [" +
         list + "]\n";
}

TEST(proxy_tunnel, curl_reaches_a_tls_origin_through_a_connect_tunnel) {
  const auto& ca = testing::test_ca::get();
  testing::nginx_server origin{
      "", testing::nginx_server::tls_settings{ca.path("server.pem"), ca.path("server.key")}};
  testing::proxy_fixture proxy{connect_config("localhost", {origin.port()}, {origin.port()}),
                               nullptr};
  const auto url = "https://localhost:" + std::to_string(origin.port()) + "/hello";
  const auto out =
      run("curl -sS --proxytunnel -x http://127.0.0.1:" + std::to_string(proxy.port()) +
          " --cacert " + ca.path("ca.pem") + " " + url + " " + url + " 2>&1");
  EXPECT_EQ(out, "hello\nhello\n") << "TLS end to end, verified against the origin's name";
  const auto tls = origin.tls_log(2);
  ASSERT_EQ(tls.size(), 2U);
  EXPECT_EQ(tls[0].server_name, "localhost") << "the SNI is the client's: TLS passes through";
  EXPECT_EQ(tls[0].connection, tls[1].connection) << "one tunnel carried both requests";
  const auto m = metrics_of(proxy);
  EXPECT_NE(m.find("tether_proxy_tunnels_total{kind=\"connect\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("tether_proxy_responses_total{class=\"2xx\",cluster=\"tunnel\"} 1"),
            std::string::npos)
      << m;
}

/// A listener's `tls:` with the test CA's server certificate (localhost, 127.0.0.1).
std::string listener_tls() {
  const auto& ca = testing::test_ca::get();
  return ", tls: {cert_file: " + ca.path("server.pem") + ", key_file: " + ca.path("server.key") +
         "}";
}

TEST(proxy_tunnel, curl_reaches_a_tls_origin_through_a_connect_tunnel_to_a_tls_listener) {
  // An HTTPS proxy: the CONNECT and the tunnel inside the client's TLS to tether, the origin's
  // TLS inside that, end to end (TLS in TLS).
  const auto& ca = testing::test_ca::get();
  testing::nginx_server origin{
      "", testing::nginx_server::tls_settings{ca.path("server.pem"), ca.path("server.key")}};
  testing::proxy_fixture proxy{
      connect_config("localhost", {origin.port()}, {origin.port()}, listener_tls()), nullptr};
  const auto url = "https://localhost:" + std::to_string(origin.port()) + "/hello";
  const auto out =
      run("curl -sS --proxytunnel -x https://localhost:" + std::to_string(proxy.port()) +
          " --proxy-cacert " + ca.path("ca.pem") + " --cacert " + ca.path("ca.pem") + " " + url +
          " " + url + " 2>&1");
  EXPECT_EQ(out, "hello\nhello\n");
  const auto tls = origin.tls_log(2);
  ASSERT_EQ(tls.size(), 2U);
  EXPECT_EQ(tls[0].connection, tls[1].connection) << "one tunnel carried both requests";
  const auto m = metrics_of(proxy);
  EXPECT_NE(m.find("tether_proxy_tunnels_total{kind=\"connect\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("tether_proxy_tunnels_active{kind=\"connect\"} 0"), std::string::npos) << m;
}

TEST(proxy_tunnel, bytes_sent_right_after_the_connect_head_go_first_through_the_tunnel) {
  echo_server echo;
  testing::proxy_fixture proxy{connect_config("127.0.0.1", {echo.port()}, {echo.port()}), nullptr};
  const std::string to = "127.0.0.1:" + std::to_string(echo.port());
  const auto got =
      send_and_read(proxy.port(), "CONNECT " + to + " HTTP/1.1\r\nHost: " + to + "\r\n\r\nearly");
  EXPECT_EQ(got, "HTTP/1.1 200 Connection established\r\n\r\nearly");
  const auto m = metrics_of(proxy);
  EXPECT_NE(m.find("tether_proxy_tunnel_bytes_total{direction=\"upstream\",kind=\"connect\"} 5"),
            std::string::npos)
      << m;
}

TEST(proxy_tunnel, connect_to_a_port_or_host_no_route_allows_is_403_and_reaches_nothing) {
  echo_server echo;
  const auto other = closed_port();
  testing::proxy_fixture proxy{connect_config("127.0.0.1", {echo.port()}, {echo.port()}), nullptr};
  for (const std::string& to :
       {"127.0.0.1:" + std::to_string(other), "example.com:" + std::to_string(echo.port())}) {
    bool closed = false;
    const auto got = testing::raw_exchange(
        proxy.port(), "CONNECT " + to + " HTTP/1.1\r\nHost: " + to + "\r\n\r\n", &closed);
    EXPECT_EQ(got.substr(0, 12), "HTTP/1.1 403") << got;
    EXPECT_NE(got.find("no route allows CONNECT to " + to), std::string::npos) << got;
    EXPECT_NE(got.find("Connection: close"), std::string::npos) << got;
    EXPECT_TRUE(closed);
  }
  EXPECT_EQ(echo.accepted(), 0);
  // A route with connect takes no other request.
  EXPECT_EQ(testing::raw_exchange(proxy.port(), "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                "Connection: close\r\n\r\n")
                .substr(0, 12),
            "HTTP/1.1 404");
}

/// The WebSocket echo server of websocket_peer.py (python3-websockets), as a child process.
class websocket_server {
public:
  /// `tls`: over TLS, with the test CA's server certificate.
  explicit websocket_server(bool tls = false) : port_{testing::free_port()} {
    const auto& ca = testing::test_ca::get();
    const auto cert = ca.path("server.pem");
    const auto key = ca.path("server.key");
    const auto port = std::to_string(port_);
    pid_ = ::fork();
    if (pid_ == 0) {
      if (tls) {
        ::execl("/usr/bin/python3", "python3", TETHER_WEBSOCKET_PEER, "server", port.c_str(),
                cert.c_str(), key.c_str(), static_cast<char*>(nullptr));
      } else {
        ::execl("/usr/bin/python3", "python3", TETHER_WEBSOCKET_PEER, "server", port.c_str(),
                static_cast<char*>(nullptr));
      }
      ::_exit(127);
    }
    testing::await_listener(pid_, port_, "the WebSocket server", [] { return std::string{}; });
  }
  websocket_server(const websocket_server&) = delete;
  websocket_server& operator=(const websocket_server&) = delete;
  ~websocket_server() { testing::stop_child(pid_); }
  [[nodiscard]] std::uint16_t port() const { return port_; }

private:
  std::uint16_t port_;
  pid_t pid_ = -1;
};

TEST(proxy_tunnel, a_websocket_client_and_server_talk_through_the_proxy) {
  websocket_server ws;
  testing::proxy_fixture proxy{{ws.port()}};
  const auto out = run(std::string{"/usr/bin/python3 "} + TETHER_WEBSOCKET_PEER + " client " +
                       "ws://127.0.0.1:" + std::to_string(proxy.port()) + "/chat 2>&1");
  EXPECT_EQ(out, "text ok\nbinary ok\nping ok\nclose 1000\n");
  const auto m = metrics_of(proxy);
  EXPECT_NE(m.find("tether_proxy_tunnels_total{kind=\"upgrade\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("tether_proxy_tunnels_active{kind=\"upgrade\"} 0"), std::string::npos) << m;
  EXPECT_NE(m.find("tether_proxy_responses_total{class=\"1xx\",cluster=\"backend\"} 1"),
            std::string::npos)
      << m;
}

TEST(proxy_tunnel, a_websocket_client_over_tls_talks_to_a_plain_server_through_the_proxy) {
  websocket_server ws;
  auto yaml = testing::proxy_fixture::yaml_for({ws.port()}, "", false);
  const std::string plain = "port: 0}]";
  ASSERT_NE(yaml.find(plain), std::string::npos) << yaml;
  yaml.replace(yaml.find(plain), plain.size(), "port: 0" + listener_tls() + "}]");
  testing::proxy_fixture proxy{yaml, nullptr};
  const auto out = run(std::string{"/usr/bin/python3 "} + TETHER_WEBSOCKET_PEER +
                       " client wss://localhost:" + std::to_string(proxy.port()) + "/chat " +
                       testing::test_ca::get().path("ca.pem") + " 2>&1");
  EXPECT_EQ(out, "text ok\nbinary ok\nping ok\nclose 1000\n");
  const auto m = metrics_of(proxy);
  EXPECT_NE(m.find("tether_proxy_tunnels_total{kind=\"upgrade\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("tether_proxy_tunnels_active{kind=\"upgrade\"} 0"), std::string::npos) << m;
}

TEST(proxy_tunnel, a_websocket_client_talks_to_a_server_over_tls_through_the_proxy) {
  // ws:// from the client, wss:// to the server: the cluster's tls, verified.
  websocket_server ws{true};
  testing::proxy_fixture proxy{{ws.port()},
                               "    tls: {ca_file: " + testing::test_ca::get().path("ca.pem") +
                                   ", server_name: localhost}\n"};
  const auto out = run(std::string{"/usr/bin/python3 "} + TETHER_WEBSOCKET_PEER + " client " +
                       "ws://127.0.0.1:" + std::to_string(proxy.port()) + "/chat 2>&1");
  EXPECT_EQ(out, "text ok\nbinary ok\nping ok\nclose 1000\n");
  const auto m = metrics_of(proxy);
  EXPECT_NE(m.find("tether_proxy_tunnels_total{kind=\"upgrade\"} 1"), std::string::npos) << m;
  EXPECT_TRUE(std::regex_search(
      m,
      std::regex{R"(tether_proxy_upstream_tls_handshakes_total\{[^}]*cluster="backend"[^}]*\} 1)"}))
      << m;
}

TEST(proxy_tunnel, an_open_websocket_holds_no_pool_slot_of_its_host) {
  websocket_server ws;
  // One pooled connection per host and worker: a WebSocket holding it would leave an ordinary
  // request to the same host nothing but the acquire timeout.
  testing::proxy_fixture proxy{{ws.port()}, "    pool: {max_size: 1, acquire_timeout: 1s}\n"};
  asio::io_context io;
  asio::ip::tcp::socket s{io};
  s.connect({asio::ip::make_address("127.0.0.1"), proxy.port()});
  asio::write(s, asio::buffer(std::string_view{
                     "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n"}));
  const timeval bound{5, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
  asio::streambuf head;
  std::error_code ec;
  asio::read_until(s, head, "\r\n\r\n", ec);
  const std::string got{asio::buffers_begin(head.data()), asio::buffers_end(head.data())};
  ASSERT_EQ(got.substr(0, 12), "HTTP/1.1 101") << got << ec.message();
  EXPECT_NE(got.find("Connection: upgrade"), std::string::npos) << got;
  EXPECT_NE(got.find("Upgrade: websocket"), std::string::npos) << got;
  EXPECT_NE(got.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), std::string::npos)
      << "RFC 6455's own example key and answer: " << got;
  // The WebSocket is open; a plain request to the same host gets through (the server refuses
  // it with 426, as it refuses any request that is not a handshake).
  const auto status =
      run("curl -s -o /dev/null -w '%{http_code}' --max-time 5 " + proxy.url("/plain"));
  EXPECT_EQ(status, "426");
  const auto m = metrics_of(proxy);
  EXPECT_NE(m.find("tether_proxy_tunnels_active{kind=\"upgrade\"} 1"), std::string::npos) << m;
}

TEST(proxy_tunnel, an_upgrade_the_upstream_refuses_is_answered_and_the_connection_closes) {
  // The test server answers 200 to a GET with Upgrade: the answer goes to the client with
  // Connection: close (what the client sent behind it is not read as requests: it may be
  // WebSocket frames), and nothing is tunnelled.
  testing::http_test_server backend;
  testing::proxy_fixture proxy{{backend.port()}};
  bool closed = false;
  const auto got = proxy.raw("GET /headers HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                             "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                             "GET /after HTTP/1.1\r\nHost: a\r\n\r\n",
                             &closed);
  EXPECT_EQ(got.substr(0, 15), "HTTP/1.1 200 OK") << got;
  EXPECT_NE(got.find("Connection: close"), std::string::npos) << got;
  EXPECT_NE(got.find("\nUpgrade: websocket\n"), std::string::npos)
      << "the Upgrade went upstream (the test server echoes the fields it got): " << got;
  EXPECT_NE(got.find("\nConnection: upgrade\n"), std::string::npos) << got;
  EXPECT_TRUE(closed);
  EXPECT_EQ(backend.requests_to("/after"), 0);
  const auto m = metrics_of(proxy);
  EXPECT_NE(m.find("tether_proxy_tunnels_total{kind=\"upgrade\"} 0"), std::string::npos) << m;
}

} // namespace
} // namespace tether::proxy
