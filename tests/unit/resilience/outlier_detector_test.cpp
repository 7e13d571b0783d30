#include "tether/resilience/outlier_detector.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace tether::resilience {
namespace {

const attempt_outcome ok = attempt_outcome::from_status(200);
const attempt_outcome s500 = attempt_outcome::from_status(500);
const attempt_outcome s503 = attempt_outcome::from_status(503);
const attempt_outcome refused{attempt_result::refused};

struct outlier_test : ::testing::Test {
  manual_clock clock;
  outlier_detection_options options;
  std::vector<std::pair<std::string, bool>> events;

  std::unique_ptr<outlier_detector> make(std::size_t hosts) {
    auto d = std::make_unique<outlier_detector>(options, clock);
    d->set_listener(
        [this](const outlier_host& h, bool ejected) { events.emplace_back(h.address(), ejected); });
    for (std::size_t i = 0; i < hosts; ++i) {
      handles.push_back(d->add_host("10.0.0." + std::to_string(i + 1) + ":80"));
    }
    return d;
  }
  std::vector<std::shared_ptr<outlier_host>> handles;
};

TEST_F(outlier_test, ejects_after_consecutive_5xx) {
  auto d = make(10);
  auto& h = *handles[0];
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(d->report(h, s500));
  }
  EXPECT_TRUE(d->report(h, s500));
  EXPECT_TRUE(h.ejected());
  EXPECT_EQ(d->ejected_count(), 1U);
  EXPECT_EQ(events, (std::vector<std::pair<std::string, bool>>{{"10.0.0.1:80", true}}));
}

TEST_F(outlier_test, a_passing_health_check_brings_an_ejected_host_back_at_once) {
  auto d = make(10);
  auto& h = *handles[0];
  EXPECT_FALSE(d->on_health_check_passed(h)) << "not ejected: nothing to do";
  for (int i = 0; i < 5; ++i) {
    d->report(h, s500);
  }
  ASSERT_TRUE(h.ejected());
  EXPECT_TRUE(d->on_health_check_passed(h));
  EXPECT_FALSE(h.ejected());
  EXPECT_EQ(d->ejected_count(), 0U);
  EXPECT_EQ(events, (std::vector<std::pair<std::string, bool>>{{"10.0.0.1:80", true},
                                                               {"10.0.0.1:80", false}}));
  // Its multiplier stays: failing again, it is out for twice the base time.
  EXPECT_EQ(h.ejection_multiplier(), 1U);
  for (int i = 0; i < 5; ++i) {
    d->report(h, s500);
  }
  ASSERT_TRUE(h.ejected());
  EXPECT_EQ(h.ejection_multiplier(), 2U);
  EXPECT_TRUE(d->on_interval().empty());
  clock.advance(d->ejection_time(1));
  EXPECT_TRUE(d->on_interval().empty()) << "out for the longer time";
  clock.advance(d->ejection_time(1));
  EXPECT_EQ(d->on_interval().size(), 1U);
}

TEST_F(outlier_test, a_success_breaks_the_streak) {
  auto d = make(10);
  auto& h = *handles[0];
  for (int i = 0; i < 4; ++i) {
    d->report(h, s500);
  }
  d->report(h, ok);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(d->report(h, s500));
  }
  EXPECT_FALSE(h.ejected());
}

TEST_F(outlier_test, gateway_failures_have_their_own_streak) {
  options.consecutive_5xx = 0; // only gateway failures eject
  options.consecutive_gateway_failure = 3;
  auto d = make(10);
  auto& h = *handles[0];
  d->report(h, s503);
  d->report(h, refused);
  d->report(h, s500); // a 5xx but not a gateway failure: breaks the streak
  d->report(h, s503);
  d->report(h, s503);
  EXPECT_FALSE(h.ejected());
  EXPECT_TRUE(d->report(h, refused)); // locally originated errors count as gateway failures
}

TEST_F(outlier_test, ejection_time_grows_with_each_ejection_and_caps) {
  options.base_ejection_time = 30s;
  options.max_ejection_time = 100s;
  auto d = make(10);
  EXPECT_EQ(d->ejection_time(1), 30s);
  EXPECT_EQ(d->ejection_time(2), 60s);
  EXPECT_EQ(d->ejection_time(3), 90s);
  EXPECT_EQ(d->ejection_time(4), 100s);
  EXPECT_EQ(d->ejection_time(4000000000U), 100s);

  auto& h = *handles[0];
  for (int round = 1; round <= 2; ++round) {
    for (int i = 0; i < 5; ++i) {
      d->report(h, s503);
    }
    ASSERT_TRUE(h.ejected());
    EXPECT_EQ(h.ejection_multiplier(), static_cast<std::uint32_t>(round));
    clock.advance(d->ejection_time(h.ejection_multiplier()) - 1ms);
    EXPECT_TRUE(d->on_interval().empty());
    clock.advance(1ms);
    EXPECT_EQ(d->on_interval().size(), 1U);
    EXPECT_FALSE(h.ejected());
  }
  EXPECT_EQ(h.times_ejected(), 2U);
}

TEST_F(outlier_test, healthy_intervals_bring_the_multiplier_back_down) {
  auto d = make(10);
  auto& h = *handles[0];
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 5; ++i) {
      d->report(h, s503);
    }
    clock.advance(d->ejection_time(h.ejection_multiplier()));
    d->on_interval();
  }
  ASSERT_EQ(h.ejection_multiplier(), 2U);
  clock.advance(options.interval);
  d->on_interval();
  EXPECT_EQ(h.ejection_multiplier(), 1U);
  clock.advance(options.interval);
  d->on_interval();
  EXPECT_EQ(h.ejection_multiplier(), 0U);
  clock.advance(options.interval);
  d->on_interval();
  EXPECT_EQ(h.ejection_multiplier(), 0U);
}

TEST_F(outlier_test, never_ejects_more_than_max_percent_but_always_one) {
  options.max_ejection_percent = 20;
  auto d = make(10);
  for (auto& h : handles) {
    for (int i = 0; i < 5; ++i) {
      d->report(*h, s503);
    }
  }
  EXPECT_EQ(d->ejected_count(), 2U);

  options.max_ejection_percent = 0;
  handles.clear();
  auto one = make(3);
  for (auto& h : handles) {
    for (int i = 0; i < 5; ++i) {
      one->report(*h, s503);
    }
  }
  EXPECT_EQ(one->ejected_count(), 1U);
}

TEST_F(outlier_test, removed_hosts_leave_the_count) {
  auto d = make(2);
  for (int i = 0; i < 5; ++i) {
    d->report(*handles[0], s503);
  }
  ASSERT_EQ(d->ejected_count(), 1U);
  d->remove_host(handles[0]);
  EXPECT_EQ(d->ejected_count(), 0U);
  EXPECT_EQ(d->host_count(), 1U);
  for (int i = 0; i < 5; ++i) {
    d->report(*handles[0], s503);
  }
  EXPECT_EQ(d->ejected_count(), 0U) << "a removed host is not ejected again";
}

TEST_F(outlier_test, rejects_bad_options) {
  options.max_ejection_percent = 101;
  EXPECT_THROW(outlier_detector(options, clock), std::invalid_argument);
  options = {};
  options.interval = 0s;
  EXPECT_THROW(outlier_detector(options, clock), std::invalid_argument);
}

TEST_F(outlier_test, two_workers_reporting_eject_once) {
  auto d = make(1);
  auto& h = *handles[0];
  auto worker = [&] {
    for (int i = 0; i < 1000; ++i) {
      d->report(h, s503);
    }
  };
  std::thread a{worker};
  std::thread b{worker};
  a.join();
  b.join();
  EXPECT_TRUE(h.ejected());
  EXPECT_EQ(h.times_ejected(), 1U);
  EXPECT_EQ(d->ejected_count(), 1U);
}

} // namespace
} // namespace tether::resilience
