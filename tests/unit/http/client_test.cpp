// The HTTP client's pure parts: URLs and Retry-After values.
#include "tether/http/client.hpp"

#include <gtest/gtest.h>

namespace tether::http {
namespace {

using namespace std::chrono_literals;

TEST(url, parses_host_port_and_target) {
  auto u = url::parse("http://example.com:8080/a/b?c=d#frag");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "example.com");
  EXPECT_EQ(u->port, 8080);
  EXPECT_EQ(u->target, "/a/b?c=d");

  auto plain = url::parse("HTTP://127.0.0.1");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->port, 80);
  EXPECT_EQ(plain->target, "/");

  auto query = url::parse("http://h?x=1");
  ASSERT_TRUE(query);
  EXPECT_EQ(query->target, "/?x=1");

  auto v6 = url::parse("http://[::1]:9000/x");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 9000);
}

TEST(url, rejects_what_it_cannot_send_safely) {
  for (const char* bad :
       {"ftp://h", "httpx://h/", "https:/h", "https://", "https://h:0/", "http://", "http:///x",
        "http://user@h/", "http://h:0/", "http://h:65536/", "http://h:12ab/", "http://h:/",
        "http://h/a b", "http://h/\r\nX: 1", "http://[::1/", "http://[]/", "http://[::1]x/",
        "h/x"}) {
    EXPECT_FALSE(url::parse(bad)) << bad;
  }
}

TEST(url, https_is_tls_on_443_unless_a_port_is_given) {
  const auto plain = url::parse("http://example.com/a");
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->tls);
  EXPECT_EQ(plain->port, 80);
  const auto secured = url::parse("HTTPS://example.com/a?b");
  ASSERT_TRUE(secured);
  EXPECT_TRUE(secured->tls);
  EXPECT_EQ(secured->port, 443);
  EXPECT_EQ(secured->target, "/a?b");
  const auto other_port = url::parse("https://[::1]:8443");
  ASSERT_TRUE(other_port);
  EXPECT_EQ(other_port->host, "::1");
  EXPECT_EQ(other_port->port, 8443);
  const auto r = request::to("GET", "https://example.com:8443/");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->tls);
  EXPECT_EQ(r->port, 8443);
}

TEST(request, to_builds_from_a_url) {
  auto r = request::to("DELETE", "http://10.0.0.1:81/items/7");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->method, "DELETE");
  EXPECT_EQ(r->host, "10.0.0.1");
  EXPECT_EQ(r->port, 81);
  EXPECT_EQ(r->target, "/items/7");
  EXPECT_FALSE(request::to("GET", "not a url"));
}

TEST(response, find_is_case_insensitive) {
  response r;
  r.headers = {{"Content-Type", "text/plain"}, {"X-A", "1"}, {"x-a", "2"}};
  ASSERT_NE(r.find("content-type"), nullptr);
  EXPECT_EQ(*r.find("content-type"), "text/plain");
  EXPECT_EQ(*r.find("X-a"), "1");
  EXPECT_EQ(r.find("missing"), nullptr);
}

TEST(retry_after, reads_seconds_and_dates) {
  const auto now = std::chrono::system_clock::from_time_t(784111777); // Sun, 06 Nov 1994 08:49:37
  EXPECT_EQ(parse_retry_after("120", now), clock::duration{120s});
  EXPECT_EQ(parse_retry_after(" 0 ", now), clock::duration{0s});
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), clock::duration{30s});
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now), clock::duration{0s});
  // Past a day is capped (a policy's max_retry_after ends such a request anyway).
  EXPECT_EQ(parse_retry_after("99999999999999999", now), clock::duration{24h});
  for (const char* bad :
       {"", "-1", "1.5", "soon", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT"}) {
    EXPECT_FALSE(parse_retry_after(bad, now)) << bad;
  }
}

TEST(client_options, validate_names_the_bad_field) {
  client_options o;
  o.max_response_body = 0;
  try {
    o.validate();
    FAIL() << "validate accepted max_response_body 0";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string{e.what()}.find("max_response_body"), std::string::npos);
  }
  client_options ok;
  EXPECT_NO_THROW(ok.validate());
}

} // namespace
} // namespace tether::http
