// The balancers and panic routing, on a fake host set: no sockets, a scripted random source.
#include "tether/upstream/balancer.hpp"

#include <gtest/gtest.h>

#include "scripted_random.hpp"

#include <map>
#include <vector>

namespace tether::upstream {
namespace {

/// A host set a test writes: which hosts are in service, their requests in flight, and which
/// breakers refuse.
struct fake_hosts {
  explicit fake_hosts(std::size_t n) : serving(n, true), in_flight(n, 0), refusing(n, false) {}
  std::vector<bool> serving;
  std::vector<std::uint32_t> in_flight;
  std::vector<bool> refusing;
  std::vector<std::size_t> asked; // permit() calls, in order

  [[nodiscard]] std::size_t size() const { return serving.size(); }
  [[nodiscard]] bool in_service(std::size_t i) const { return serving[i]; }
  [[nodiscard]] std::uint32_t active(std::size_t i) const { return in_flight[i]; }
  resilience::circuit_breaker::permission permit(std::size_t i) {
    asked.push_back(i);
    return {0, !refusing[i]};
  }
};

using testing::scripted_random;

std::size_t first_try(balancer& b, fake_hosts& hosts, random_source& random) {
  const tried_hosts none{hosts.size()};
  const auto got = b.choose(hosts, none, random);
  EXPECT_TRUE(got.found);
  EXPECT_TRUE(got.permission);
  return got.index;
}

TEST(balancer, round_robin_takes_each_host_in_turn) {
  balancer b{lb_policy::round_robin};
  fake_hosts hosts{3};
  scripted_random random{{0}};
  std::vector<std::size_t> order;
  for (int i = 0; i < 6; ++i) {
    order.push_back(first_try(b, hosts, random));
  }
  EXPECT_EQ(order, (std::vector<std::size_t>{0, 1, 2, 0, 1, 2}));
}

TEST(balancer, one_host_is_chosen_whatever_its_health_and_tries_unless_its_breaker_refuses) {
  for (const auto policy : {lb_policy::round_robin, lb_policy::least_request, lb_policy::random}) {
    balancer b{policy};
    fake_hosts hosts{1};
    scripted_random random{{0}};
    hosts.serving[0] = false; // panic routing: better to try it than to refuse
    tried_hosts tried{1};
    tried.add(0); // a retry has nowhere else to go
    const auto got = b.choose(hosts, tried, random);
    EXPECT_TRUE(got.found && got.index == 0 && got.permission);
    hosts.refusing[0] = true;
    EXPECT_FALSE(b.choose(hosts, tried, random).found);
    EXPECT_EQ(hosts.asked.size(), 2U); // its breaker asked once per choice
  }
}

TEST(balancer, a_retry_goes_to_a_host_not_tried_without_moving_the_rotation) {
  balancer b{lb_policy::round_robin};
  fake_hosts hosts{3};
  scripted_random random{{0}};
  tried_hosts tried{3};
  const auto first = b.choose(hosts, tried, random);
  ASSERT_TRUE(first.found);
  EXPECT_EQ(first.index, 0U);
  tried.add(first.index);
  const auto retry = b.choose(hosts, tried, random);
  EXPECT_NE(retry.index, 0U);
  tried.add(retry.index);
  const auto third = b.choose(hosts, tried, random);
  EXPECT_EQ(third.index, 2U - (retry.index == 2U ? 1U : 0U)); // the one left
  // Every host tried: the tried ones are candidates again.
  tried.add(third.index);
  EXPECT_TRUE(b.choose(hosts, tried, random).found);
  // The next request's first try carries on the rotation from where it was.
  EXPECT_EQ(first_try(b, hosts, random), 1U);
}

TEST(balancer, least_request_takes_the_less_busy_of_two_drawn) {
  balancer b{lb_policy::least_request};
  fake_hosts hosts{4};
  hosts.in_flight = {5, 1, 7, 3};
  scripted_random random{{0, 1, 2, 3, 3, 2}};
  EXPECT_EQ(first_try(b, hosts, random), 1U); // hosts 0 and 1: 1 has fewer
  EXPECT_EQ(first_try(b, hosts, random), 3U); // hosts 2 and 3: 3 has fewer
  EXPECT_EQ(first_try(b, hosts, random), 3U); // hosts 3 and 2: still 3
}

TEST(balancer, random_draws_among_the_candidates) {
  balancer b{lb_policy::random};
  fake_hosts hosts{3};
  scripted_random random{{5, 7, 9}};
  EXPECT_EQ(first_try(b, hosts, random), 2U); // 5 % 3
  EXPECT_EQ(first_try(b, hosts, random), 1U); // 7 % 3
  EXPECT_EQ(first_try(b, hosts, random), 0U); // 9 % 3
}

TEST(balancer, hosts_out_of_service_get_nothing_while_others_are_in) {
  balancer b{lb_policy::round_robin};
  fake_hosts hosts{3};
  hosts.serving = {true, false, true};
  scripted_random random{{0}};
  std::map<std::size_t, int> count;
  for (int i = 0; i < 10; ++i) {
    ++count[first_try(b, hosts, random)];
  }
  EXPECT_EQ(count[1], 0);
  EXPECT_EQ(count[0] + count[2], 10);
}

TEST(balancer, panic_routing_spreads_over_every_host_when_none_is_in_service) {
  // Envoy's panic threshold at its limit: better to try every host than to refuse everything.
  balancer b{lb_policy::round_robin};
  fake_hosts hosts{3};
  hosts.serving = {false, false, false};
  scripted_random random{{0}};
  std::map<std::size_t, int> count;
  for (int i = 0; i < 9; ++i) {
    ++count[first_try(b, hosts, random)];
  }
  EXPECT_EQ(count[0], 3);
  EXPECT_EQ(count[1], 3);
  EXPECT_EQ(count[2], 3);
}

TEST(balancer, an_open_breakers_share_spreads_over_the_others) {
  // Host 1's breaker refuses: its turns go to hosts 2 and 3 alternately, not all to host 2.
  balancer b{lb_policy::round_robin};
  fake_hosts hosts{4};
  hosts.refusing = {false, true, false, false};
  scripted_random random{{0}};
  std::map<std::size_t, int> count;
  for (int i = 0; i < 40; ++i) {
    ++count[first_try(b, hosts, random)];
  }
  EXPECT_EQ(count[1], 0);
  EXPECT_EQ(count[0] + count[2] + count[3], 40);
  EXPECT_LE(std::max({count[0], count[2], count[3]}) - std::min({count[0], count[2], count[3]}), 2);
}

TEST(balancer, every_breaker_refusing_finds_nothing_and_asks_each_once) {
  balancer b{lb_policy::round_robin};
  fake_hosts hosts{3};
  hosts.refusing = {true, true, true};
  scripted_random random{{0}};
  const tried_hosts none{3};
  const auto got = b.choose(hosts, none, random);
  EXPECT_FALSE(got.found);
  EXPECT_EQ(hosts.asked.size(), 3U);
}

TEST(balancer, a_tried_host_is_taken_again_when_the_untried_ones_refuse) {
  balancer b{lb_policy::round_robin};
  fake_hosts hosts{2};
  hosts.refusing = {false, true};
  scripted_random random{{0}};
  tried_hosts tried{2};
  tried.add(0);
  const auto got = b.choose(hosts, tried, random);
  ASSERT_TRUE(got.found);
  EXPECT_EQ(got.index, 0U);
}

TEST(tried_hosts, counts_past_64_hosts) {
  tried_hosts tried{100};
  EXPECT_TRUE(tried.empty());
  tried.add(70);
  EXPECT_FALSE(tried.empty());
  EXPECT_TRUE(tried.has(70));
  EXPECT_FALSE(tried.has(69));
  tried.add(3);
  EXPECT_TRUE(tried.has(3));
}

} // namespace
} // namespace tether::upstream
