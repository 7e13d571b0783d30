// Reading PostgreSQL's text output as C++ values (pg::result::value): the parsers on their own,
// with the texts the server's output functions write. pg_pool_test reads them from a real server.
#include "tether/pg/result.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace tether::pg::detail {
namespace {

using namespace std::chrono;

template <class T>
std::optional<T> read(std::string_view text) {
  T out{};
  if (!parse_value(text, out)) {
    return std::nullopt;
  }
  return out;
}

TEST(pg_values, integers_take_the_whole_text_in_range) {
  EXPECT_EQ(read<std::int16_t>("-32768"), std::int16_t{-32768});
  EXPECT_EQ(read<std::int16_t>("32768"), std::nullopt) << "out of int16's range";
  EXPECT_EQ(read<std::int32_t>("2147483647"), 2147483647);
  EXPECT_EQ(read<std::int64_t>("-9223372036854775808"), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(read<std::int32_t>("12abc"), std::nullopt) << "trailing text";
  EXPECT_EQ(read<std::int32_t>(" 12"), std::nullopt);
  EXPECT_EQ(read<std::int32_t>(""), std::nullopt);
  EXPECT_EQ(read<std::int32_t>("1.5"), std::nullopt);
}

TEST(pg_values, floats_read_the_servers_special_values) {
  EXPECT_EQ(read<double>("1.5e+20"), 1.5e20);
  EXPECT_EQ(read<double>("123.4500"), 123.45) << "numeric's output";
  EXPECT_EQ(read<double>("Infinity"), std::numeric_limits<double>::infinity());
  EXPECT_EQ(read<double>("-Infinity"), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(read<double>("NaN").value()));
  EXPECT_EQ(read<float>("0.25"), 0.25F);
  EXPECT_EQ(read<double>("one"), std::nullopt);
}

TEST(pg_values, bools_are_t_and_f) {
  EXPECT_EQ(read<bool>("t"), true);
  EXPECT_EQ(read<bool>("f"), false);
  EXPECT_EQ(read<bool>("true"), std::nullopt) << "boolout never writes it";
}

TEST(pg_values, bytea_is_hex_only) {
  EXPECT_EQ(read<bytes>("\\xdeadBEEF"), (bytes{0xde, 0xad, 0xbe, 0xef}));
  EXPECT_EQ(read<bytes>("\\x"), bytes{});
  EXPECT_EQ(read<bytes>("\\xabc"), std::nullopt) << "odd number of digits";
  EXPECT_EQ(read<bytes>("\\xzz"), std::nullopt);
  EXPECT_EQ(read<bytes>("ab\\000"), std::nullopt) << "the escape format is refused";
}

timestamp at(int y, unsigned m, unsigned d, hours h = hours{0}, minutes mi = minutes{0},
             seconds s = seconds{0}, microseconds us = microseconds{0}) {
  return timestamp{sys_days{year{y} / month{m} / day{d}}} + h + mi + s + us;
}

TEST(pg_values, timestamps_in_iso_style_with_and_without_offsets) {
  EXPECT_EQ(read<timestamp>("2024-01-02"), at(2024, 1, 2)) << "a date is its midnight, UTC";
  EXPECT_EQ(read<timestamp>("2024-02-29 23:59:59"), at(2024, 2, 29, 23h, 59min, 59s));
  EXPECT_EQ(read<timestamp>("2024-02-29 23:59:59.5"), at(2024, 2, 29, 23h, 59min, 59s, 500000us));
  EXPECT_EQ(read<timestamp>("2024-02-29 23:59:59.000001"), at(2024, 2, 29, 23h, 59min, 59s, 1us));
  // timestamptz in the session's zone: local time minus the offset is UTC.
  EXPECT_EQ(read<timestamp>("2024-03-01 05:29:59.5+05:30"),
            at(2024, 2, 29, 23h, 59min, 59s, 500000us));
  EXPECT_EQ(read<timestamp>("2024-01-01 20:00:00-04"), at(2024, 1, 2, 0h));
  EXPECT_EQ(read<timestamp>("1883-11-18 12:00:00+05:53:28"), at(1883, 11, 18, 6h, 6min, 32s));
  EXPECT_EQ(read<timestamp>("10000-01-01"), at(10000, 1, 1)) << "years past 9999";
  EXPECT_EQ(read<timestamp>("infinity"), timestamp::max());
  EXPECT_EQ(read<timestamp>("-infinity"), timestamp::min());
}

TEST(pg_values, text_that_is_not_a_timestamp_is_refused) {
  EXPECT_EQ(read<timestamp>("2023-02-29"), std::nullopt) << "no such day";
  EXPECT_EQ(read<timestamp>("0044-03-15 BC"), std::nullopt);
  EXPECT_EQ(read<timestamp>("2024-01-02T03:04:05"), std::nullopt) << "not the server's style";
  EXPECT_EQ(read<timestamp>("2024-01-02 03:04"), std::nullopt);
  EXPECT_EQ(read<timestamp>("2024-01-02 03:04:05."), std::nullopt);
  EXPECT_EQ(read<timestamp>("2024-01-02 03:04:05+"), std::nullopt);
  EXPECT_EQ(read<timestamp>("01/02/2024"), std::nullopt) << "DateStyle SQL is not read";
}

TEST(pg_values, an_empty_result_refuses_every_cell_with_its_shape) {
  const result empty;
  try {
    (void)empty.value<int>(0, 0);
    FAIL() << "no conversion_error";
  } catch (const conversion_error& e) {
    EXPECT_STREQ(e.what(), "pg::result::value<int32>(0, 0): the result has 0 rows and 0 columns");
  }
  try {
    (void)empty.value<std::optional<std::string>>(0, "name");
    FAIL() << "no conversion_error";
  } catch (const conversion_error& e) {
    EXPECT_STREQ(e.what(), "pg::result::value: no column named \"name\"; the columns are none");
  }
}

} // namespace
} // namespace tether::pg::detail
