// Forward proxy settings on their own (tether/http/proxy.hpp): proxy URLs, NO_PROXY rules as curl
// and Go read them, the environment, and a proxy's answer to CONNECT.
#include "tether/http/proxy.hpp"

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

namespace tether::http {
namespace {

TEST(proxy_endpoint, parses_host_port_and_credentials) {
  auto p = proxy_endpoint::parse("http://squid.internal:3128");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->host, "squid.internal");
  EXPECT_EQ(p->port, 3128);
  EXPECT_TRUE(p->user.empty());

  auto bare = proxy_endpoint::parse("127.0.0.1:8888");
  ASSERT_TRUE(bare) << "no scheme: http";
  EXPECT_EQ(bare->host, "127.0.0.1");
  EXPECT_EQ(bare->port, 8888);

  auto with_user = proxy_endpoint::parse("http://me%40corp:p%3Ass@[::1]");
  ASSERT_TRUE(with_user);
  EXPECT_EQ(with_user->host, "::1");
  EXPECT_EQ(with_user->port, 80);
  EXPECT_EQ(with_user->user, "me@corp");
  EXPECT_EQ(with_user->password, "p:ss");
}

TEST(proxy_endpoint, says_what_it_cannot_take) {
  std::string problem;
  EXPECT_FALSE(proxy_endpoint::parse("socks5://h:1080", &problem));
  EXPECT_EQ(problem, "the proxy \"socks5://h:1080\" has the scheme \"socks5\": only http:// "
                     "proxies are taken (https requests go through them in a CONNECT tunnel)");
  EXPECT_FALSE(proxy_endpoint::parse("http://h:0", &problem));
  EXPECT_EQ(problem, "the proxy \"http://h:0\" has the port \"0\": a port is a number from 1 to "
                     "65535");
  EXPECT_FALSE(proxy_endpoint::parse("http://", &problem));
  EXPECT_FALSE(proxy_endpoint::parse("http://a b:1", &problem));
  EXPECT_EQ(problem, "the proxy \"http://a b:1\" is not a URL");
  EXPECT_FALSE(proxy_endpoint::parse("socks5://me:secret@h:1080", &problem));
  EXPECT_EQ(problem.find("secret"), std::string::npos) << problem;
  EXPECT_NE(problem.find("socks5://***@h:1080"), std::string::npos) << problem;
}

TEST(no_proxy, matches_names_their_subdomains_addresses_blocks_and_ports) {
  const std::string rules = "example.com, .internal,10.1.2.3,192.168.0.0/16,[::1]:8080,api:9000";
  EXPECT_TRUE(bypasses_proxy(rules, "example.com", 443));
  EXPECT_TRUE(bypasses_proxy(rules, "www.EXAMPLE.com", 80));
  EXPECT_FALSE(bypasses_proxy(rules, "badexample.com", 80)) << "a suffix is a whole label";
  EXPECT_TRUE(bypasses_proxy(rules, "db.internal", 5432));
  EXPECT_TRUE(bypasses_proxy(rules, "internal", 80));
  EXPECT_TRUE(bypasses_proxy(rules, "10.1.2.3", 80));
  EXPECT_FALSE(bypasses_proxy(rules, "10.1.2.4", 80));
  EXPECT_TRUE(bypasses_proxy(rules, "192.168.40.1", 80));
  EXPECT_FALSE(bypasses_proxy(rules, "192.169.0.1", 80));
  EXPECT_TRUE(bypasses_proxy(rules, "::1", 8080));
  EXPECT_FALSE(bypasses_proxy(rules, "::1", 8081)) << "the rule names a port";
  EXPECT_TRUE(bypasses_proxy(rules, "api", 9000));
  EXPECT_FALSE(bypasses_proxy(rules, "api", 9001));
  EXPECT_FALSE(bypasses_proxy(rules, "other.org", 80));
  EXPECT_TRUE(bypasses_proxy("*", "anything", 1));
  EXPECT_FALSE(bypasses_proxy("", "anything", 1));
  EXPECT_TRUE(bypasses_proxy("fd00::/8", "fd12::1", 80));
  EXPECT_FALSE(bypasses_proxy("fd00::/8", "fe80::1", 80));
}

class environment : public testing::Test {
protected:
  void SetUp() override {
    for (const char* name : names) {
      if (const char* v = std::getenv(name)) {
        saved_.emplace_back(name, v);
      }
      ::unsetenv(name);
    }
  }
  void TearDown() override {
    for (const char* name : names) {
      ::unsetenv(name);
    }
    for (const auto& [name, value] : saved_) {
      ::setenv(name.c_str(), value.c_str(), 1);
    }
  }
  static constexpr const char* names[] = {"http_proxy",    "HTTP_PROXY", "https_proxy",
                                          "HTTPS_PROXY",   "no_proxy",   "NO_PROXY",
                                          "REQUEST_METHOD"};

private:
  std::vector<std::pair<std::string, std::string>> saved_;
};

TEST_F(environment, is_read_lower_case_first_and_keeps_loopback_direct) {
  ::setenv("HTTP_PROXY", "http://upper:1", 1);
  ::setenv("https_proxy", "http://lower:2", 1);
  ::setenv("HTTPS_PROXY", "http://upper:2", 1);
  ::setenv("NO_PROXY", "corp.example", 1);
  const auto s = proxy_settings::from_environment();
  EXPECT_EQ(s.http, "http://upper:1");
  EXPECT_EQ(s.https, "http://lower:2");
  EXPECT_EQ(s.no_proxy, "corp.example,localhost,127.0.0.0/8,::1");
  EXPECT_TRUE(bypasses_proxy(s.no_proxy, "127.0.0.1", 8080));
  EXPECT_TRUE(bypasses_proxy(s.no_proxy, "localhost", 8080));
}

TEST_F(environment, ignores_http_proxy_in_upper_case_inside_a_cgi_script) {
  // httpoxy: a request's "Proxy:" header becomes HTTP_PROXY in a CGI script.
  ::setenv("REQUEST_METHOD", "GET", 1);
  ::setenv("HTTP_PROXY", "http://attacker:1", 1);
  EXPECT_EQ(proxy_settings::from_environment().http, "");
  ::setenv("http_proxy", "http://chosen:1", 1);
  EXPECT_EQ(proxy_settings::from_environment().http, "http://chosen:1");
}

TEST_F(environment, leaves_out_a_proxy_it_cannot_use_instead_of_refusing_every_client) {
  ::setenv("https_proxy", "https://secure-proxy:443", 1);
  ::setenv("http_proxy", "socks5://socks:1080", 1);
  const auto s = proxy_settings::from_environment();
  EXPECT_EQ(s.https, "");
  EXPECT_EQ(s.http, "");
}

TEST_F(environment, empty_means_direct_with_no_rules_added) {
  const auto s = proxy_settings::from_environment();
  EXPECT_TRUE(s.http.empty());
  EXPECT_TRUE(s.https.empty());
  EXPECT_TRUE(s.no_proxy.empty());
}

TEST(connect_reply, reads_the_status_of_a_proxys_answer) {
  EXPECT_EQ(connect_reply_status("HTTP/1.1 200 Connection established\r\n\r\n"), 200);
  EXPECT_EQ(connect_reply_status("HTTP/1.0 200\r\n\r\n"), 200);
  EXPECT_EQ(connect_reply_status("HTTP/1.1 407 Proxy Authentication Required\r\n"), 407);
  EXPECT_FALSE(connect_reply_status("HTTP/2 200\r\n"));
  EXPECT_FALSE(connect_reply_status("HTTP/1.1 2x0 OK\r\n"));
  EXPECT_FALSE(connect_reply_status("HTTP/1.1 2000 OK\r\n"));
  EXPECT_FALSE(connect_reply_status("SSH-2.0-OpenSSH\r\n"));
  EXPECT_FALSE(connect_reply_status(""));
}

} // namespace
} // namespace tether::http
