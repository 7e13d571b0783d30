// The router: which route a request takes, on routes written in the test.
#include "router.hpp"

#include <gtest/gtest.h>

namespace tether::proxy::detail {
namespace {

std::optional<std::size_t> route_of(const std::vector<route_config>& routes,
                                    std::string_view method, std::string_view target,
                                    std::string_view host) {
  http::request_target t;
  EXPECT_FALSE(http::read_request_target(method, target, t)) << target;
  return find_route(routes, t.form == http::target_form::absolute ? t.authority : host, t);
}

TEST(router, the_first_route_whose_host_and_prefix_match_wins) {
  const std::vector<route_config> routes = {
      {"api.example.com", "/v1/", "api", std::nullopt},
      {"*", "/static/", "static", std::nullopt},
      {"*", "/", "web", std::nullopt},
  };
  EXPECT_EQ(route_of(routes, "GET", "/v1/users?id=7", "API.Example.com:8080"), 0U);
  EXPECT_EQ(route_of(routes, "GET", "/v1/users", "other.example.com"), 2U);
  EXPECT_EQ(route_of(routes, "GET", "/static/a.css", "api.example.com"), 1U);
  EXPECT_EQ(route_of(routes, "GET", "/?v1/", "api.example.com"), 2U); // a query is not a path
  EXPECT_EQ(route_of(routes, "GET", "http://api.example.com/v1/x", "ignored"), 0U);
  EXPECT_EQ(route_of(routes, "GET", "http://api.example.com?q", "ignored"), 2U); // path "/"
  EXPECT_EQ(route_of(routes, "GET", "/", "[::1]:8080"), 2U);
}

TEST(router, asterisk_form_goes_where_the_hosts_catch_all_goes) {
  const std::vector<route_config> routes = {
      {"*", "/api/", "api", std::nullopt},
      {"a.example", "/", "a", std::nullopt},
  };
  EXPECT_EQ(route_of(routes, "OPTIONS", "*", "a.example"), 1U);
  EXPECT_EQ(route_of(routes, "OPTIONS", "*", "b.example"), std::nullopt);
  EXPECT_EQ(route_of(routes, "GET", "/elsewhere", "b.example"), std::nullopt);
}

TEST(router, a_route_for_a_client_certificate_takes_only_its_subject) {
  const std::vector<route_config> routes = {
      {"*", "/", "admin", std::nullopt, "CN=operator,O=Example"},
      {"*", "/", "public", std::nullopt, ""},
  };
  http::request_target t;
  ASSERT_FALSE(http::read_request_target("GET", "/x", t));
  EXPECT_EQ(find_route(routes, "h", t, "CN=operator,O=Example"), 0U);
  EXPECT_EQ(find_route(routes, "h", t, "CN=someone-else,O=Example"), 1U);
  EXPECT_EQ(find_route(routes, "h", t, ""), 1U); // no certificate: not the operator's route
  EXPECT_EQ(find_route(routes, "h", t, "cn=operator,o=example"), 1U); // exact, as the DN reads
}

TEST(router, a_connect_takes_only_a_connect_route_of_its_host_and_port) {
  std::vector<route_config> routes = {
      {"db.internal", "/", "db", std::nullopt, "", connect_route_config{{5432, 6432}}},
      {"*", "/", "any443", std::nullopt, "", connect_route_config{{443}}},
      {"*", "/", "web", std::nullopt},
  };
  EXPECT_EQ(find_connect_route(routes, "DB.internal:6432"), 0U);
  EXPECT_EQ(find_connect_route(routes, "db.internal:443"), 1U);
  EXPECT_EQ(find_connect_route(routes, "db.internal:22"), std::nullopt) << "a port no route lists";
  EXPECT_EQ(find_connect_route(routes, "[::1]:443"), 1U) << "an IPv6 literal's port";
  EXPECT_EQ(find_connect_route(routes, "[::1]:22"), std::nullopt);
  // A request that is not a CONNECT never takes a connect route.
  http::request_target t;
  ASSERT_FALSE(http::read_request_target("GET", "/", t));
  EXPECT_EQ(find_route(routes, "db.internal", t), 2U);
}

} // namespace
} // namespace tether::proxy::detail
