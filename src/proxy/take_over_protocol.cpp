#include "take_over_protocol.hpp"

#include <charconv>
#include <optional>

namespace tether::proxy::take_over {
namespace {

constexpr std::string_view greeting = "tether take-over 1 ";

// The text after `prefix` in `text`, or nullopt.
std::optional<std::string_view> after(std::string_view text, std::string_view prefix) {
  if (!text.starts_with(prefix)) {
    return std::nullopt;
  }
  return text.substr(prefix.size());
}

// The next word of `rest`, taken off it.
std::string_view next_word(std::string_view& rest) {
  const auto space = rest.find(' ');
  const auto word = rest.substr(0, space);
  rest = space == std::string_view::npos ? std::string_view{} : rest.substr(space + 1);
  return word;
}

// A process id: digits only, above 0; else 0.
int pid_of(std::string_view text) {
  int pid = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), pid);
  return ec == std::errc{} && end == text.data() + text.size() && pid > 0 ? pid : 0;
}

} // namespace

message read(std::string_view text) noexcept {
  message m;
  if (const auto rest = after(text, greeting)) {
    m.pid = pid_of(*rest);
    m.what = m.pid > 0 ? says::hello : says::unknown;
  } else if (auto words = after(text, "socket ")) {
    m.kind = next_word(*words);
    next_word(*words); // its port
    next_word(*words); // its address
    m.name = *words;
    m.what = m.kind == "listener" || m.kind == "admin" ? says::socket : says::unknown;
    if (m.what == says::unknown) {
      m.kind = m.name = {};
    }
  } else if (const auto ended = after(text, "end ")) {
    m.what = says::end;
    m.pid = pid_of(*ended);
  } else if (const auto why = after(text, "refused ")) {
    m.what = says::refused;
    m.reason = *why;
  } else if (const auto ready_at = after(text, "ready ")) {
    m.what = says::ready;
    m.pid = pid_of(*ready_at);
  } else if (text == draining) {
    m.what = says::draining;
  }
  return m;
}

std::string hello(int pid) {
  return std::string{greeting} + std::to_string(pid);
}

std::string socket(std::string_view kind, std::uint16_t port, std::string_view address,
                   std::string_view name) {
  return "socket " + std::string{kind} + " " + std::to_string(port) + " " + std::string{address} +
         " " + std::string{name};
}

std::string end(int pid) {
  return "end " + std::to_string(pid);
}

std::string refused(std::string_view why) {
  return "refused " + std::string{why};
}

std::string ready(int pid) {
  return "ready " + std::to_string(pid);
}

} // namespace tether::proxy::take_over
