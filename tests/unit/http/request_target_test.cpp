#include "tether/http/request_target.hpp"

#include <gtest/gtest.h>

#include <array>
#include <string>

namespace tether::http {
namespace {

std::error_code target_error(std::string_view method, std::string_view target) {
  request_target t;
  return read_request_target(method, target, t);
}

TEST(request_target, reads_the_four_forms) {
  request_target t;
  ASSERT_FALSE(read_request_target("GET", "/a/b?c=d", t));
  EXPECT_EQ(t.form, target_form::origin);
  EXPECT_EQ(t.path_and_query, "/a/b?c=d");

  // RFC 9112 3.2.2: a server MUST accept the absolute-form.
  ASSERT_FALSE(read_request_target("GET", "http://Example.com:8080/a?b", t));
  EXPECT_EQ(t.form, target_form::absolute);
  EXPECT_EQ(t.scheme, "http");
  EXPECT_EQ(t.authority, "Example.com:8080");
  EXPECT_EQ(t.path_and_query, "/a?b");
  ASSERT_FALSE(read_request_target("GET", "HTTPS://[::1]", t));
  EXPECT_EQ(t.authority, "[::1]");
  EXPECT_EQ(t.path_and_query, ""); // its origin-form is "/"
  ASSERT_FALSE(read_request_target("GET", "http://a?q", t));
  EXPECT_EQ(t.path_and_query, "?q");

  // RFC 9112 3.2.3 and 3.2.4: authority-form for CONNECT, asterisk-form for OPTIONS.
  ASSERT_FALSE(read_request_target("CONNECT", "example.com:443", t));
  EXPECT_EQ(t.form, target_form::authority);
  EXPECT_EQ(t.authority, "example.com:443");
  ASSERT_FALSE(read_request_target("OPTIONS", "*", t));
  EXPECT_EQ(t.form, target_form::asterisk);
}

TEST(request_target, refuses_a_form_its_method_does_not_take) {
  const auto invalid = make_error_code(errc::invalid_target);
  EXPECT_EQ(target_error("GET", "*"), invalid);
  EXPECT_EQ(target_error("GET", "example.com:443"), invalid); // authority-form without CONNECT
  EXPECT_EQ(target_error("CONNECT", "/"), invalid);
  EXPECT_EQ(target_error("CONNECT", "example.com"), invalid); // CONNECT needs the port
  EXPECT_EQ(target_error("GET", "ftp://example.com/"), invalid);
  EXPECT_EQ(target_error("GET", "http://user@example.com/"), invalid); // RFC 9110 4.2.4
  EXPECT_EQ(target_error("GET", "http:///path"), invalid);             // no host
  EXPECT_EQ(target_error("GET", "http://a:99999/"), invalid);
  EXPECT_EQ(target_error("GET", "http://a#frag"), invalid);
  EXPECT_EQ(target_error("GET", "relative/path"), invalid);
}

TEST(request_target, an_authority_is_host_and_an_optional_port) {
  for (const char* good :
       {"example.com", "example.com:80", "EXAMPLE.com:65535", "10.0.0.1:8080", "[::1]", "[::1]:443",
        "[2001:db8::7]:1", "a-b_c~d.e", "%41bc", "example.com:"}) {
    EXPECT_TRUE(is_valid_authority(good)) << good;
  }
  for (const char* bad : {"", ":80", "example.com:http", "example.com:65536", "example.com:123456",
                          "a/b", "user@example.com", "a b", "[::1", "[zz::1]", "[::1]x",
                          "example.com:80:80", "%4", "a\"b", "[]"}) {
    EXPECT_FALSE(is_valid_authority(bad)) << bad;
  }
  EXPECT_EQ(host_of("example.com:80"), "example.com");
  EXPECT_EQ(host_of("[::1]:80"), "::1");
  EXPECT_TRUE(same_authority("Example.COM", "example.com:80", "http"));
  EXPECT_TRUE(same_authority("example.com:443", "example.com", "https"));
  EXPECT_FALSE(same_authority("example.com:8080", "example.com", "http"));
  EXPECT_FALSE(same_authority("a.example.com", "b.example.com", "http"));
}

TEST(request_target, host_rules_of_rfc_9112) {
  request_target origin;
  ASSERT_FALSE(read_request_target("GET", "/", origin));
  std::string_view authority;
  const std::array<header, 1> one = {header{"Host", "api.example.com:8080"}};
  ASSERT_FALSE(check_host(one, 1, origin, authority));
  EXPECT_EQ(authority, "api.example.com:8080");

  // A server MUST answer 400 to an HTTP/1.1 request without Host, and to any with two.
  EXPECT_EQ(check_host(std::span<const header>{}, 1, origin, authority),
            make_error_code(errc::missing_host));
  const std::array<header, 2> two = {header{"Host", "a"}, header{"host", "b"}};
  EXPECT_EQ(check_host(two, 1, origin, authority), make_error_code(errc::duplicate_host));
  EXPECT_EQ(check_host(two, 0, origin, authority), make_error_code(errc::duplicate_host));
  // ... and to one with an invalid value.
  for (const char* bad : {"", "a/b", "user@a", "a:port", "a:70000"}) {
    const std::array<header, 1> host = {header{"Host", bad}};
    EXPECT_EQ(check_host(host, 1, origin, authority), make_error_code(errc::invalid_host)) << bad;
  }
  // HTTP/1.0 may omit it.
  EXPECT_FALSE(check_host(std::span<const header>{}, 0, origin, authority));
  EXPECT_EQ(authority, "");

  // Absolute-form: the target's authority counts; a Host naming another host is refused.
  request_target absolute;
  ASSERT_FALSE(read_request_target("GET", "http://api.example.com/x", absolute));
  const std::array<header, 1> same = {header{"Host", "API.example.com:80"}};
  ASSERT_FALSE(check_host(same, 1, absolute, authority));
  EXPECT_EQ(authority, "api.example.com");
  const std::array<header, 1> other = {header{"Host", "admin.internal"}};
  EXPECT_EQ(check_host(other, 1, absolute, authority), make_error_code(errc::host_mismatch));
  EXPECT_EQ(check_host(std::span<const header>{}, 1, absolute, authority),
            make_error_code(errc::missing_host));
  EXPECT_FALSE(check_host(std::span<const header>{}, 0, absolute, authority));
  EXPECT_EQ(authority, "api.example.com");
}

} // namespace
} // namespace tether::http
