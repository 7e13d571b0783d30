// tether's HTTPS client against real TLS peers: Debian's nginx (keep-alive, session resumption,
// SNI, mTLS; what it saw is read from its logs) and `openssl s_server` (an expired certificate,
// a version we refuse, a client certificate it requires). The certificates come from the openssl
// CLI (support/make_test_ca.sh). Every error is provoked and its code and message checked.
#include "tether/http/client.hpp"

#include <gtest/gtest.h>

#include <future>
#include <set>
#include <thread>

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/use_future.hpp>

#include "nginx_server.hpp"
#include "openssl_server.hpp"
#include "test_ca.hpp"
#include "tether/core/error.hpp"
#include "tether/metrics/registry.hpp"

namespace tether::http {
namespace {

using namespace std::chrono_literals;
using testing::nginx_server;
using testing::openssl_server;
using testing::test_ca;

const test_ca& ca() {
  return test_ca::get();
}

nginx_server::tls_settings server_cert(std::string client_ca = {}) {
  return {ca().path("server.pem"), ca().path("server.key"), std::move(client_ca)};
}

constexpr const char* locations =
    "    location = /close { keepalive_timeout 0; return 200 \"bye\\n\"; }\n";

client_options trusting_the_test_ca() {
  client_options o;
  o.tls.ca_file = ca().path("ca.pem");
  o.retry.max_attempts = 3; // a certificate error must still be tried once only
  o.breaker.reset();
  return o;
}

/// A client on its own io_context thread; the test thread uses its blocking facade.
class fixture {
public:
  explicit fixture(const client_options& options, metrics::registry* registry = nullptr)
      : work_{io_.get_executor()}, client_{client::create(io_.get_executor(), options, registry)},
        thread_{[this] { io_.run(); }} {}
  fixture(const fixture&) = delete;
  fixture& operator=(const fixture&) = delete;
  ~fixture() {
    asio::co_spawn(io_, client_->async_close(), asio::use_future).wait_for(10s);
    work_.reset();
    io_.stop();
    thread_.join();
  }

  client_result get(const std::string& url) { return client_->send(request::to("GET", url)); }
  client::tls_stats handshakes() { return client_->handshakes(); }
  client::host_stats stats(const std::string& host, std::uint16_t port) {
    std::promise<client::host_stats> p;
    asio::post(
        io_, [&] { p.set_value(client_->stats(host, port, true).value_or(client::host_stats{})); });
    return p.get_future().get();
  }

private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::shared_ptr<client> client_;
  std::thread thread_;
};

std::string https(std::uint16_t port, const std::string& host = "localhost",
                  const std::string& target = "/hello") {
  return "https://" + host + ":" + std::to_string(port) + target;
}

TEST(tls_client, requests_ride_one_verified_connection) {
  nginx_server nginx{locations, server_cert()};
  metrics::registry registry;
  fixture c{trusting_the_test_ca(), &registry};
  for (int i = 0; i < 20; ++i) {
    const auto r = c.get(https(nginx.port()));
    ASSERT_FALSE(r.error) << r.error.message();
    EXPECT_EQ(r.response.status, 200);
    EXPECT_EQ(r.response.body, "hello\n");
  }
  const auto log = nginx.tls_log(20);
  ASSERT_EQ(log.size(), 20U);
  std::set<long> connections;
  for (const auto& l : log) {
    connections.insert(l.connection);
    EXPECT_EQ(l.server_name, "localhost"); // SNI sent
  }
  EXPECT_EQ(connections.size(), 1U);
  EXPECT_EQ(c.handshakes().full, 1U);
  EXPECT_EQ(c.stats("localhost", nginx.port()).connections_opened, 1U);
  const auto exposed = registry.expose();
  EXPECT_NE(
      exposed.find("tether_http_client_tls_handshakes_total{client=\"default\",result=\"full\"} 1"),
      std::string::npos)
      << exposed;
}

TEST(tls_client, a_new_connection_resumes_the_hosts_last_session) {
  nginx_server nginx{locations, server_cert()};
  fixture c{trusting_the_test_ca()};
  for (int i = 0; i < 3; ++i) {
    // nginx closes after each /close: every request needs a new connection.
    const auto r = c.get(https(nginx.port(), "localhost", "/close"));
    ASSERT_FALSE(r.error) << r.error.message();
    EXPECT_EQ(r.response.body, "bye\n");
  }
  const auto log = nginx.tls_log(3);
  ASSERT_EQ(log.size(), 3U);
  EXPECT_EQ(log[0].reused, ".");
  EXPECT_EQ(log[1].reused, "r");
  EXPECT_EQ(log[2].reused, "r");
  EXPECT_EQ(c.handshakes().full, 1U);
  EXPECT_EQ(c.handshakes().resumed, 2U);
}

TEST(tls_client, connections_are_never_shared_across_sni_names) {
  nginx_server nginx{locations, server_cert()};
  fixture c{trusting_the_test_ca()};
  for (int i = 0; i < 3; ++i) {
    ASSERT_FALSE(c.get(https(nginx.port(), "localhost")).error);
    ASSERT_FALSE(c.get(https(nginx.port(), "127.0.0.1")).error); // verified against the IP SAN
  }
  const auto log = nginx.tls_log(6);
  ASSERT_EQ(log.size(), 6U);
  std::set<long> by_name;
  std::set<long> by_address;
  for (const auto& l : log) {
    (l.server_name == "localhost" ? by_name : by_address).insert(l.connection);
  }
  EXPECT_EQ(by_name.size(), 1U);
  EXPECT_EQ(by_address.size(), 1U);
  EXPECT_NE(*by_name.begin(), *by_address.begin());
  EXPECT_EQ(log[1].server_name, "-"); // no SNI for an address (RFC 6066)
}

TEST(tls_client, mutual_tls_presents_the_client_certificate) {
  nginx_server nginx{locations, server_cert(ca().path("ca.pem"))};
  auto options = trusting_the_test_ca();
  options.tls.cert_file = ca().path("client.pem");
  options.tls.key_file = ca().path("client.key");
  fixture c{options};
  const auto r = c.get(https(nginx.port()));
  ASSERT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(r.response.status, 200);
  const auto log = nginx.tls_log(1);
  ASSERT_EQ(log.size(), 1U);
  EXPECT_EQ(log[0].client_dn, "CN=client-one");

  fixture without{trusting_the_test_ca()};
  // nginx finishes the handshake and answers 400 itself when no certificate came.
  EXPECT_EQ(without.get(https(nginx.port())).response.status, 400);
}

void expect_failure(fixture& c, const std::string& url, tether::errc expected,
                    std::string_view words) {
  const auto r = c.get(url);
  EXPECT_EQ(r.error, make_error_code(expected)) << r.error.message();
  EXPECT_NE(r.error.message().find(words), std::string::npos) << r.error.message();
  EXPECT_EQ(r.attempts, 1U) << "a certificate error is not retried";
}

TEST(tls_client, an_unknown_ca_is_refused_and_not_retried) {
  nginx_server nginx{locations, server_cert()};
  client_options system_trust = trusting_the_test_ca();
  system_trust.tls.ca_file.clear(); // the system's store does not know the test CA
  fixture c{system_trust};
  expect_failure(c, https(nginx.port()), tether::errc::tls_unknown_ca, "trusted CA");
  EXPECT_TRUE(nginx.access_log().empty());
}

TEST(tls_client, a_self_signed_certificate_is_an_unknown_ca) {
  openssl_server server{{"-cert", ca().path("self.pem"), "-key", ca().path("self.key")}};
  fixture c{trusting_the_test_ca()};
  expect_failure(c, https(server.port()), tether::errc::tls_unknown_ca, "trusted CA");
}

TEST(tls_client, a_name_the_certificate_lacks_is_a_hostname_mismatch) {
  nginx_server nginx{locations, server_cert()};
  auto options = trusting_the_test_ca();
  options.tls.server_name = "api.example.org";
  fixture c{options};
  expect_failure(c, https(nginx.port()), tether::errc::tls_hostname_mismatch, "host name");
}

TEST(tls_client, an_expired_certificate_is_refused) {
  openssl_server server{{"-cert", ca().path("expired.pem"), "-key", ca().path("expired.key")}};
  metrics::registry registry;
  fixture c{trusting_the_test_ca(), &registry};
  expect_failure(c, https(server.port()), tether::errc::tls_certificate_expired, "expired");
  EXPECT_EQ(c.handshakes().failed, 1U);
  const auto exposed = registry.expose();
  EXPECT_NE(exposed.find("result=\"tls_failure\"} 1"), std::string::npos) << exposed;
  EXPECT_NE(exposed.find("tether_http_client_tls_handshake_failures_total{cause=\"certificate_"
                         "expired\",client=\"default\"} 1"),
            std::string::npos)
      << exposed;
}

TEST(tls_client, a_server_below_our_minimum_version_is_refused) {
  openssl_server server{
      {"-cert", ca().path("server.pem"), "-key", ca().path("server.key"), "-tls1_2"}};
  auto options = trusting_the_test_ca();
  options.tls.min_version = tls::version::tls1_3;
  fixture c{options};
  const auto r = c.get(https(server.port()));
  EXPECT_EQ(r.error, make_error_code(tether::errc::tls_protocol_version)) << r.error.message();
}

TEST(tls_client, a_server_that_requires_a_certificate_refuses_us_without_one) {
  openssl_server server{{"-cert", ca().path("server.pem"), "-key", ca().path("server.key"),
                         "-Verify", "1", "-CAfile", ca().path("ca.pem")}};
  fixture c{trusting_the_test_ca()};
  const auto r = c.get(https(server.port()));
  EXPECT_EQ(r.error, make_error_code(tether::errc::tls_certificate_refused)) << r.error.message();
}

TEST(tls_client, a_peer_that_never_answers_the_handshake_times_out) {
  asio::io_context silent_io;
  asio::ip::tcp::acceptor silent{silent_io, {asio::ip::make_address("127.0.0.1"), 0}};
  // The kernel completes the TCP handshake from the backlog; nobody ever reads or writes.
  auto options = trusting_the_test_ca();
  options.tls.handshake_timeout = 200ms;
  options.retry.max_attempts = 1;
  fixture c{options};
  const auto r = c.get(https(silent.local_endpoint().port()));
  EXPECT_EQ(r.error, make_error_code(tether::errc::tls_handshake_timeout)) << r.error.message();
}

TEST(tls_client, a_bad_ca_file_is_refused_when_the_client_is_made) {
  asio::io_context io;
  client_options options;
  options.tls.ca_file = "/nonexistent/ca.pem";
  try {
    (void)client::create(io.get_executor(), options);
    FAIL() << "no error for a missing CA file";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string{e.what()}.find("tls ca_file /nonexistent/ca.pem: cannot read it"),
              std::string::npos)
        << e.what();
  }
  options.tls.ca_file.clear();
  options.tls.cert_file = ca().path("client.pem");
  options.tls.key_file = ca().path("client2.key");
  try {
    (void)client::create(io.get_executor(), options);
    FAIL() << "no error for a key that is not the certificate's";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string{e.what()}.find("does not match tls key_file"), std::string::npos)
        << e.what();
  }
}

} // namespace
} // namespace tether::http
