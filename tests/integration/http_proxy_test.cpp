// tether's HTTP client through a real forward proxy (Debian's tinyproxy) to real origins
// (nginx, plain and TLS): http:// requests in absolute form, https:// ones through a CONNECT
// tunnel with TLS end to end, credentials for the proxy, NO_PROXY, and a proxy that refuses.
// What went through the proxy is read from its log; what reached the origin from nginx's.
#include <gtest/gtest.h>

#include <string>

#include "client_thread.hpp"
#include "nginx_server.hpp"
#include "test_ca.hpp"
#include "tether/core/error.hpp"
#include "tinyproxy_server.hpp"

namespace tether::http {
namespace {

using testing::client_thread;
using testing::nginx_server;
using testing::test_ca;
using testing::tinyproxy_server;

client_options through(const std::string& proxy, const std::string& no_proxy = {}) {
  client_options o;
  o.proxy = {proxy, proxy, no_proxy};
  o.tls.ca_file = test_ca::get().path("ca.pem");
  o.retry.max_attempts = 1;
  o.breaker.reset();
  return o;
}

TEST(http_proxy, plain_requests_go_to_the_proxy_in_absolute_form) {
  nginx_server origin;
  tinyproxy_server proxy;
  client_thread c{through(proxy.url())};
  const auto url = "http://127.0.0.1:" + std::to_string(origin.port()) + "/hello";
  for (int i = 0; i < 3; ++i) {
    const auto r = c.get(url);
    ASSERT_FALSE(r.error) << r.message;
    EXPECT_EQ(r.response.status, 200);
    EXPECT_EQ(r.response.body, "hello\n");
  }
  const auto seen = proxy.requests(3);
  ASSERT_EQ(seen.size(), 3U);
  for (const auto& line : seen) {
    EXPECT_EQ(line, "GET " + url);
  }
  EXPECT_EQ(origin.access_log(3).size(), 3U);
  // tinyproxy closes its client's connection after each response (Connection: close); the
  // client takes that and opens another.
  EXPECT_EQ(c.stats("127.0.0.1", origin.port()).connections_opened, 3U);
}

TEST(http_proxy, https_goes_through_a_connect_tunnel_with_tls_to_the_origin) {
  const auto& ca = test_ca::get();
  nginx_server origin{"", nginx_server::tls_settings{ca.path("server.pem"), ca.path("server.key")}};
  tinyproxy_server proxy;
  client_thread c{through(proxy.url())};
  const auto url = "https://localhost:" + std::to_string(origin.port()) + "/hello";
  for (int i = 0; i < 2; ++i) {
    const auto r = c.get(url);
    ASSERT_FALSE(r.error) << r.message;
    EXPECT_EQ(r.response.body, "hello\n");
  }
  const auto seen = proxy.requests(1);
  ASSERT_EQ(seen.size(), 1U) << "one tunnel, kept alive for both requests";
  EXPECT_EQ(seen[0], "CONNECT localhost:" + std::to_string(origin.port()));
  const auto tls = origin.tls_log(2);
  ASSERT_EQ(tls.size(), 2U);
  EXPECT_EQ(tls[0].server_name, "localhost") << "SNI is the origin's, end to end";
  EXPECT_EQ(tls[0].connection, tls[1].connection);
}

TEST(http_proxy, credentials_in_the_proxy_url_answer_its_407) {
  nginx_server origin;
  const auto& ca = test_ca::get();
  nginx_server tls_origin{"",
                          nginx_server::tls_settings{ca.path("server.pem"), ca.path("server.key")}};
  tinyproxy_server proxy{"tether", "s3cret"};
  const auto plain = "http://127.0.0.1:" + std::to_string(origin.port()) + "/hello";
  const auto secure = "https://localhost:" + std::to_string(tls_origin.port()) + "/hello";

  client_thread without{through(proxy.url())};
  const auto refused = without.get(plain);
  ASSERT_FALSE(refused.error) << refused.message;
  EXPECT_EQ(refused.response.status, 407) << "for plain HTTP the proxy's answer is the answer";
  const auto no_tunnel = without.get(secure);
  EXPECT_EQ(no_tunnel.error, tether::errc::proxy_authentication_required) << no_tunnel.message;
  EXPECT_EQ(no_tunnel.message, "GET " + secure +
                                   ": cannot connect: the proxy wants credentials (407): give them "
                                   "in its URL, http://user:password@host");

  client_thread with{through("http://tether:s3cret@127.0.0.1:" + std::to_string(proxy.port()))};
  const auto ok = with.get(plain);
  ASSERT_FALSE(ok.error) << ok.message;
  EXPECT_EQ(ok.response.status, 200);
  const auto tunnelled = with.get(secure);
  ASSERT_FALSE(tunnelled.error) << tunnelled.message;
  EXPECT_EQ(tunnelled.response.body, "hello\n");
}

TEST(http_proxy, no_proxy_hosts_go_direct_and_a_refused_tunnel_is_an_error) {
  nginx_server origin;
  tinyproxy_server proxy;
  const auto port = std::to_string(origin.port());
  client_thread c{through(proxy.url(), "127.0.0.1:" + port)};
  const auto direct = c.get("http://127.0.0.1:" + port + "/hello");
  ASSERT_FALSE(direct.error) << direct.message;
  EXPECT_EQ(direct.response.body, "hello\n");
  const auto proxied = c.get("http://localhost:" + port + "/hello");
  ASSERT_FALSE(proxied.error) << proxied.message;
  const auto seen = proxy.requests(1);
  ASSERT_EQ(seen.size(), 1U) << "only the request NO_PROXY did not name";
  EXPECT_EQ(seen[0], "GET http://localhost:" + port + "/hello");

  // A tunnel to a port nothing listens on: the proxy answers 500 to CONNECT.
  const auto nowhere = c.get("https://localhost:1/");
  EXPECT_EQ(nowhere.error, tether::errc::proxy_refused) << nowhere.message;
}

TEST(http_proxy, a_bad_proxy_setting_is_refused_when_the_client_is_made) {
  asio::io_context io;
  client_options o;
  o.proxy.https = "socks5://127.0.0.1:1080";
  try {
    (void)client::create(io.get_executor(), o);
    FAIL() << "a socks proxy was taken";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string{e.what()},
              "client_options.proxy.https: the proxy \"socks5://127.0.0.1:1080\" has the scheme "
              "\"socks5\": only http:// proxies are taken (https requests go through them in a "
              "CONNECT tunnel)");
  }
}

} // namespace
} // namespace tether::http
