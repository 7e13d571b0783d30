#pragma once

#include <iterator>
#include <string_view>

#include "tether/core/text.hpp"

namespace tether::http {

/// The first of `fields` named `name`, compared case-insensitively (RFC 9110 5.1), or null.
/// `fields` is any range of elements with a `name` that converts to std::string_view: the
/// parser's headers, the client's request and response fields, the server's request fields and
/// the proxy's owned heads all look a field up with it, so none has a rule of its own.
template <typename Fields>
[[nodiscard]] auto find_field(const Fields& fields, std::string_view name) noexcept
    -> decltype(&*std::begin(fields)) {
  for (const auto& f : fields) {
    if (iequals(std::string_view{f.name}, name)) {
      return &f;
    }
  }
  return nullptr;
}

} // namespace tether::http
