#pragma once

// Small text helpers the HTTP codec's parts share (private to src/http).

#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "tether/core/text.hpp"

namespace tether::http::detail {

using tether::iequals;

/// A byte allowed in a token (RFC 9110 5.6.2): methods and field names.
[[nodiscard]] inline bool is_tchar(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

/// Without optional whitespace (SP, HTAB) at either end.
[[nodiscard]] inline std::string_view trim_ows(std::string_view v) noexcept {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) {
    v.remove_prefix(1);
  }
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) {
    v.remove_suffix(1);
  }
  return v;
}

/// Sets `*problem` (when asked for) to why something was refused, and returns nullopt: the
/// form of every `parse(text, problem)` here.
inline std::nullopt_t fail(std::string* problem, std::string text) {
  if (problem != nullptr) {
    *problem = std::move(text);
  }
  return std::nullopt;
}

} // namespace tether::http::detail
