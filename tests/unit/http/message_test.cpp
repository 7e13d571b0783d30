// The HTTP client's messages on their own: URLs, requests built and checked, response fields
// and Retry-After values (tether/http/message.hpp).
#include "tether/http/message.hpp"

#include <stdexcept>
#include <string>

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
       {"http://[not-v6]/", "http://[['x]:8/", "ftp://h",        "httpx://h/",
        "https:/h",         "https://",        "https://h:0/",   "http://",
        "http:///x",        "http://user@h/",  "http://h:0/",    "http://h:65536/",
        "http://h:12ab/",   "http://h:/",      "http://h/a b",   "http://h/\r\nX: 1",
        "http://[::1/",     "http://[]/",      "http://[::1]x/", "h/x"}) {
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
  EXPECT_TRUE(r.tls);
  EXPECT_EQ(r.port, 8443);
}

TEST(request, to_builds_from_a_url) {
  auto r = request::to("DELETE", "http://10.0.0.1:81/items/7");
  EXPECT_EQ(r.method, "DELETE");
  EXPECT_EQ(r.host, "10.0.0.1");
  EXPECT_EQ(r.port, 81);
  EXPECT_EQ(r.target, "/items/7");
}

// The message of what request::to throws, or "" when it does not.
std::string refusal(std::string_view method, std::string_view text) {
  try {
    (void)request::to(method, text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(request, to_throws_saying_what_is_wrong_instead_of_returning_nothing) {
  EXPECT_EQ(refusal("GET", "not a url"),
            "http::request::to: the URL \"not a url\" has no scheme: only http:// and https:// "
            "URLs are taken");
  EXPECT_EQ(refusal("GET", "ftp://files.example.com/a"),
            "http::request::to: the URL \"ftp://files.example.com/a\" has the scheme \"ftp\": "
            "only http:// and https:// URLs are taken");
  EXPECT_EQ(refusal("GET", "http://h:99999/"),
            "http::request::to: the URL \"http://h:99999/\" has the port \"99999\": a port is a "
            "number from 1 to 65535");
  EXPECT_EQ(refusal("GET", "http://h/a b"),
            "http::request::to: the URL \"http://h/a b\" holds a space at offset 10: encode it "
            "(%20 for a space)");
  EXPECT_EQ(refusal("GET", "http://h/\r\nX: 1"),
            "http::request::to: the URL \"http://h/\\x0D\\x0AX: 1\" holds the byte 0x0D at "
            "offset 9: encode it (%20 for a space)");
  EXPECT_EQ(refusal("GE T", "http://h/"),
            "http::request::to: the method \"GE T\" holds 0x20, which a method cannot (RFC 9110 "
            "9.1: a token)");
  EXPECT_EQ(refusal("GET", "http://user:pw@h/"),
            "http::request::to: the URL \"http://user:pw@h/\" holds user information "
            "(user@host): give credentials in an Authorization header instead");
  EXPECT_EQ(refusal("GET", "https://h/"), "");
}

TEST(url, parse_says_what_is_wrong_when_asked) {
  std::string problem;
  EXPECT_FALSE(url::parse("http://[::1/", &problem));
  EXPECT_EQ(
      problem,
      "the URL \"http://[::1/\" has an IPv6 address without its closing ']', or an empty one");
  EXPECT_FALSE(url::parse("http:///x", &problem));
  EXPECT_EQ(problem, "the URL \"http:///x\" has no host");
  const std::string long_url = "gopher://" + std::string(100, 'a');
  EXPECT_FALSE(url::parse(long_url, &problem));
  EXPECT_EQ(problem,
            "the URL \"gopher://" + std::string(71, 'a') +
                "...\" has the scheme \"gopher\": only http:// and https:// URLs are taken");
  problem.clear();
  EXPECT_TRUE(url::parse("http://h/", &problem));
  EXPECT_EQ(problem, "");
}

TEST(request, problem_names_the_field_and_why) {
  request r = request::to("POST", "http://h/");
  EXPECT_EQ(r.problem(), "");
  r.headers = {{"Content-Length", "5"}};
  EXPECT_EQ(r.problem(), "the header Content-Length is the client's to set: it frames the body "
                         "itself (Content-Length from request::body)");
  r.headers = {{"Connection", "close"}};
  EXPECT_EQ(r.problem(), "the header Connection is the client's to set: it is about the "
                         "connection, which the client manages");
  r.headers = {{"X-Bad", "a\r\nX-Injected: 1"}};
  EXPECT_EQ(r.problem(), "the value of the header X-Bad holds the byte 0x0D at offset 1: a field "
                         "value cannot hold control bytes (CR and LF would end it)");
  r.headers = {{"X Bad", "1"}};
  EXPECT_EQ(r.problem(),
            "the header name \"X Bad\" holds 0x20, which a field name cannot (RFC 9110 5.1: a "
            "token)");
  r.headers.clear();
  r.target = "items";
  EXPECT_EQ(
      r.problem(),
      "the target \"items\" does not start with '/' (only OPTIONS may have the target \"*\")");
  r.target = "/";
  r.host = "[::1]";
  EXPECT_EQ(r.problem(), "the host \"[::1]\" holds '[', which a host name or address cannot (an "
                         "IPv6 address goes without brackets)");
}

TEST(response, find_is_case_insensitive) {
  response r;
  r.headers = {{"Content-Type", "text/plain"}, {"X-A", "1"}, {"x-a", "2"}};
  ASSERT_NE(r.find("content-type"), nullptr);
  EXPECT_EQ(*r.find("content-type"), "text/plain");
  EXPECT_EQ(*r.find("X-a"), "1");
  EXPECT_EQ(r.find("missing"), nullptr);
}

TEST(request, target_url_omits_the_default_port_and_brackets_ipv6) {
  EXPECT_EQ(request::to("GET", "http://h/a?b").target_url(), "http://h/a?b");
  EXPECT_EQ(request::to("GET", "https://h:8443/").target_url(), "https://h:8443/");
  EXPECT_EQ(request::to("GET", "http://[::1]:80/x").target_url(), "http://[::1]/x");
}

// Where `location` leads from `from` (RFC 3986 5.4's examples, among others).
std::string resolve(std::string_view from, std::string_view location) {
  std::string problem;
  auto next = redirected(request::to("GET", from), 302, location, &problem);
  return next ? next->target_url() : "error: " + problem;
}

TEST(redirected, resolves_the_location_against_the_request_url) {
  const std::string base = "http://a/b/c/d;p?q";
  EXPECT_EQ(resolve(base, "g"), "http://a/b/c/g");
  EXPECT_EQ(resolve(base, "./g"), "http://a/b/c/g");
  EXPECT_EQ(resolve(base, "g/"), "http://a/b/c/g/");
  EXPECT_EQ(resolve(base, "/g"), "http://a/g");
  EXPECT_EQ(resolve(base, "//g"), "http://g/");
  EXPECT_EQ(resolve(base, "?y"), "http://a/b/c/d;p?y");
  EXPECT_EQ(resolve(base, "g?y"), "http://a/b/c/g?y");
  EXPECT_EQ(resolve(base, "g#s"), "http://a/b/c/g") << "a fragment is never sent";
  EXPECT_EQ(resolve(base, "../g"), "http://a/b/g");
  EXPECT_EQ(resolve(base, "../../../g"), "http://a/g");
  EXPECT_EQ(resolve(base, "https://other:8443/x"), "https://other:8443/x");
  EXPECT_EQ(resolve("https://a:8443/b", "/c"), "https://a:8443/c");
  EXPECT_EQ(resolve("http://[::1]:8080/b", "c"), "http://[::1]:8080/c");
  EXPECT_EQ(resolve("http://[::1]:8080/b", "http://[0:0::1]:8080/c"), "http://[::1]:8080/c");
}

TEST(redirected, refuses_a_location_it_cannot_follow_and_says_which) {
  EXPECT_EQ(resolve("http://a/", "ftp://a/file"),
            "error: the redirect's Location \"ftp://a/file\" cannot be followed: the URL "
            "\"ftp://a/file\" has the scheme \"ftp\": only http:// and https:// URLs are taken");
  EXPECT_EQ(resolve("http://a/", "/a b"),
            "error: the redirect's Location \"/a b\" is not a URI reference (RFC 3986)");
  EXPECT_EQ(resolve("http://a/", "http://u@h/"),
            "error: the redirect's Location \"http://u@h/\" cannot be followed: the URL "
            "\"http://u@h/\" holds user information (user@host): give credentials in an "
            "Authorization header instead");
}

request post_with_body() {
  auto r = request::to("POST", "http://a/form");
  r.body = "x=1";
  r.headers = {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "*/*"}};
  return r;
}

TEST(redirected, changes_the_method_as_rfc_9110_and_browsers_do) {
  // 303: anything but HEAD becomes a GET without a body or its Content-* fields.
  for (const int status : {301, 302, 303}) {
    auto next = redirected(post_with_body(), status, "/done");
    ASSERT_TRUE(next);
    EXPECT_EQ(next->method, "GET") << status;
    EXPECT_TRUE(next->body.empty()) << status;
    ASSERT_EQ(next->headers.size(), 1U) << status;
    EXPECT_EQ(next->headers[0].name, "Accept");
  }
  auto put = request::to("PUT", "http://a/x");
  put.body = "v";
  EXPECT_EQ(redirected(put, 303, "/y")->method, "GET");
  EXPECT_EQ(redirected(put, 301, "/y")->method, "PUT") << "301 and 302 change only POST";
  EXPECT_EQ(redirected(put, 301, "/y")->body, "v");
  EXPECT_EQ(redirected(request::to("HEAD", "http://a/"), 303, "/y")->method, "HEAD");
  // 307 and 308 keep the method and the body.
  for (const int status : {307, 308}) {
    auto next = redirected(post_with_body(), status, "/again");
    ASSERT_TRUE(next);
    EXPECT_EQ(next->method, "POST");
    EXPECT_EQ(next->body, "x=1");
    EXPECT_EQ(next->headers.size(), 2U);
    EXPECT_EQ(next->target, "/again");
  }
}

TEST(redirected, a_produced_body_is_never_asked_for_again) {
  auto r = request::to("PUT", "http://a/x");
  r.body_source = [] { return std::string_view{}; };
  r.body_length = 0;
  std::string problem;
  EXPECT_FALSE(redirected(r, 307, "/y", &problem));
  EXPECT_EQ(problem, "a 307 asks for the body again, and a request::body_source is read once: "
                     "not followed");
  auto get = redirected(r, 303, "/y");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->method, "GET");
  EXPECT_FALSE(get->body_source);
  EXPECT_FALSE(get->body_length);
}

TEST(request, problem_refuses_a_body_and_a_source_together) {
  auto r = request::to("POST", "http://a/x");
  r.body = "x";
  r.body_source = [] { return std::string_view{}; };
  EXPECT_EQ(r.problem(), "the request has both a body and a body_source: give one");
  r.body.clear();
  EXPECT_EQ(r.problem(), "");
  r.body_source = nullptr;
  r.body_length = 3;
  EXPECT_EQ(r.problem(), "body_length is for a body_source: a body's length is its size");
}

TEST(redirected, credentials_do_not_cross_to_another_origin) {
  auto r = request::to("GET", "http://a:8080/x");
  r.headers = {{"Authorization", "Bearer t"},
               {"Cookie", "s=1"},
               {"Proxy-Authorization", "Basic p"},
               {"Host", "a.example"},
               {"Accept", "*/*"}};
  auto same = redirected(r, 302, "/y");
  ASSERT_TRUE(same);
  EXPECT_EQ(same->headers.size(), 5U) << "the same origin keeps them";
  for (const char* other : {"http://b:8080/y", "http://a:8081/y", "https://a:8080/y"}) {
    auto next = redirected(r, 302, other);
    ASSERT_TRUE(next) << other;
    ASSERT_EQ(next->headers.size(), 1U) << other;
    EXPECT_EQ(next->headers[0].name, "Accept") << other;
  }
  EXPECT_EQ(redirected(r, 302, "http://A:8080/y")->headers.size(), 5U)
      << "host names compare without case";
  auto v6 = r;
  v6.host = "::1";
  EXPECT_EQ(redirected(v6, 302, "http://[0::1]:8080/y")->headers.size(), 5U)
      << "an IPv6 address compares as an address";
}

TEST(redirected, is_redirect_names_the_statuses_followed) {
  for (const int status : {301, 302, 303, 307, 308}) {
    EXPECT_TRUE(is_redirect(status)) << status;
  }
  for (const int status : {200, 300, 304, 305, 306, 309, 400}) {
    EXPECT_FALSE(is_redirect(status)) << status;
  }
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
  // A date centuries ahead (which no system_clock time point can hold) is a day, not overflow.
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2815 07:28:00 GMT", std::chrono::system_clock::now()),
            std::chrono::hours{24});
}

} // namespace
} // namespace tether::http
