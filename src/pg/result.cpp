#include "tether/pg/result.hpp"

#include <charconv>
#include <cstring>

namespace tether::pg {
namespace detail {
namespace {

// The whole of `text` as a number of type T, as std::from_chars reads it: nothing before, nothing
// after, in T's range.
template <class T>
bool parse_number(std::string_view text, T& out) noexcept {
  if (text.empty()) {
    return false;
  }
  const char* end = text.data() + text.size();
  const auto [at, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc{} && at == end;
}

// Reads `count` digits at `text[at]` as an unsigned number and moves `at` past them.
bool digits(std::string_view text, std::size_t& at, std::size_t count, int& out) noexcept {
  if (at + count > text.size()) {
    return false;
  }
  out = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const char c = text[at + i];
    if (c < '0' || c > '9') {
      return false;
    }
    out = out * 10 + (c - '0');
  }
  at += count;
  return true;
}

bool expect(std::string_view text, std::size_t& at, char c) noexcept {
  if (at < text.size() && text[at] == c) {
    ++at;
    return true;
  }
  return false;
}

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

} // namespace

bool parse_value(std::string_view text, bool& out) noexcept {
  // boolout writes "t" or "f".
  if (text == "t") {
    out = true;
    return true;
  }
  if (text == "f") {
    out = false;
    return true;
  }
  return false;
}

bool parse_value(std::string_view text, std::int16_t& out) noexcept {
  return parse_number(text, out);
}
bool parse_value(std::string_view text, std::int32_t& out) noexcept {
  return parse_number(text, out);
}
bool parse_value(std::string_view text, std::int64_t& out) noexcept {
  return parse_number(text, out);
}
// float4out and float8out write "NaN", "Infinity" and "-Infinity", which std::from_chars reads
// (it matches "inf", "infinity" and "nan" without regard to case); numeric's output reads too.
bool parse_value(std::string_view text, float& out) noexcept {
  return parse_number(text, out);
}
bool parse_value(std::string_view text, double& out) noexcept {
  return parse_number(text, out);
}

bool parse_value(std::string_view text, std::string& out) {
  out.assign(text);
  return true;
}

bool parse_value(std::string_view text, std::string_view& out) noexcept {
  out = text;
  return true;
}

bool parse_value(std::string_view text, bytes& out) {
  // byteaout with bytea_output = hex (the default since PostgreSQL 9.0): "\x" and two hex digits a
  // byte. The older escape format is refused rather than guessed at.
  if (text.size() < 2 || text[0] != '\\' || text[1] != 'x' || text.size() % 2 != 0) {
    return false;
  }
  out.clear();
  out.reserve((text.size() - 2) / 2);
  for (std::size_t i = 2; i < text.size(); i += 2) {
    const int high = hex_digit(text[i]);
    const int low = hex_digit(text[i + 1]);
    if (high < 0 || low < 0) {
      return false;
    }
    out.push_back(static_cast<std::uint8_t>(high * 16 + low));
  }
  return true;
}

bool parse_value(std::string_view text, timestamp& out) noexcept {
  // DateStyle ISO (the default): "2024-01-02" (date), "2024-01-02 03:04:05[.ffffff]"
  // (timestamp, taken as UTC) and the same followed by "+01", "-03:30" or "+05:53:28"
  // (timestamptz, in the session's TimeZone). Years may have more than four digits; " BC"
  // dates are refused. "infinity" and "-infinity" are the latest and earliest timestamps.
  using namespace std::chrono;
  if (text == "infinity") {
    out = timestamp::max();
    return true;
  }
  if (text == "-infinity") {
    out = timestamp::min();
    return true;
  }
  std::size_t at = 0;
  std::size_t year_digits = 0;
  while (year_digits < text.size() && text[year_digits] >= '0' && text[year_digits] <= '9') {
    ++year_digits;
  }
  int y = 0;
  int mo = 0;
  int d = 0;
  if (year_digits < 4 || year_digits > 6 || !digits(text, at, year_digits, y) ||
      !expect(text, at, '-') || !digits(text, at, 2, mo) || !expect(text, at, '-') ||
      !digits(text, at, 2, d)) {
    return false;
  }
  const year_month_day date{year{y}, month{static_cast<unsigned>(mo)},
                            day{static_cast<unsigned>(d)}};
  if (!date.ok()) {
    return false;
  }
  microseconds time_of_day{0};
  if (at < text.size()) {
    int h = 0;
    int mi = 0;
    int s = 0;
    if (!expect(text, at, ' ') || !digits(text, at, 2, h) || !expect(text, at, ':') ||
        !digits(text, at, 2, mi) || !expect(text, at, ':') || !digits(text, at, 2, s) || h > 24 ||
        mi > 59 || s > 60) {
      return false;
    }
    time_of_day = hours{h} + minutes{mi} + seconds{s};
    if (expect(text, at, '.')) {
      // One to six digits of fraction: "05.5" is 500000 microseconds.
      int fraction = 0;
      std::size_t places = 0;
      while (at < text.size() && text[at] >= '0' && text[at] <= '9' && places < 6) {
        fraction = fraction * 10 + (text[at] - '0');
        ++at;
        ++places;
      }
      if (places == 0) {
        return false;
      }
      for (std::size_t p = places; p < 6; ++p) {
        fraction *= 10;
      }
      time_of_day += microseconds{fraction};
    }
    if (at < text.size()) {
      const char sign = text[at++];
      int oh = 0;
      int om = 0;
      int os = 0;
      if ((sign != '+' && sign != '-') || !digits(text, at, 2, oh)) {
        return false;
      }
      if (expect(text, at, ':') && !digits(text, at, 2, om)) {
        return false;
      }
      if (expect(text, at, ':') && !digits(text, at, 2, os)) {
        return false;
      }
      const seconds offset = hours{oh} + minutes{om} + seconds{os};
      // Local time is UTC plus the offset, so UTC is local time minus it.
      time_of_day -= sign == '+' ? offset : -offset;
    }
  }
  if (at != text.size()) {
    return false;
  }
  out = timestamp{sys_days{date}} + time_of_day;
  return true;
}

} // namespace detail

int result::column_index(std::string_view name) const noexcept {
  // PQfnumber folds unquoted names to lower case and wants NUL-terminated text; match the name
  // as the server gave it instead.
  for (int c = 0; c < columns(); ++c) {
    if (column_name(c) == name) {
      return c;
    }
  }
  return -1;
}

void result::check(int row, int column, const char* type) const {
  if (row < 0 || row >= rows() || column < 0 || column >= columns()) {
    throw conversion_error{"pg::result::value<" + std::string{type} + ">(" + std::to_string(row) +
                           ", " + std::to_string(column) + "): the result has " +
                           std::to_string(rows()) + " rows and " + std::to_string(columns()) +
                           " columns"};
  }
}

void result::fail(int row, int column, const char* type) const {
  constexpr std::size_t shown = 64; // of a long text, enough to recognise it
  const std::string_view text = get(row, column);
  const std::string quoted =
      is_null(row, column)
          ? std::string{"NULL (read it as std::optional<"} + type + ">)"
          : "'" + std::string{text.substr(0, shown)} + (text.size() > shown ? "...'" : "'");
  throw conversion_error{"column \"" + std::string{column_name(column)} + "\" (" +
                         std::to_string(column) + "), row " + std::to_string(row) + ": " + quoted +
                         " cannot be read as " + type};
}

void result::no_column(std::string_view name) const {
  std::string known;
  for (int c = 0; c < columns(); ++c) {
    known += (c == 0 ? "\"" : ", \"") + std::string{column_name(c)} + "\"";
  }
  throw conversion_error{"pg::result::value: no column named \"" + std::string{name} +
                         "\"; the columns are " + (known.empty() ? "none" : known)};
}

} // namespace tether::pg
