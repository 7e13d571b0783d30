#pragma once

#include <exception>
#include <string_view>

namespace tether {

/// A completion for `asio::co_spawn` of an `awaitable<void>` that nobody waits for: like
/// `asio::detached`, except that an exception escaping the coroutine is reported, with what the
/// coroutine was doing and so what was lost, instead of vanishing. tether's coroutines report
/// failures through error codes; an exception here is a bug (or an allocation failure) that
/// should be seen.
///
///   asio::co_spawn(io, session(...), tether::report_exceptions{"a client connection"});
struct report_exceptions {
  /// What the coroutine did, for the report ("a client connection", "a pool's housekeeping").
  std::string_view what;

  void operator()(const std::exception_ptr& e) const noexcept {
    if (e) {
      report(what, e);
    }
  }

  /// Writes "tether: <what> ended with an exception: <its what()>" to the reporter (stderr
  /// unless set_exception_reporter changed it).
  static void report(std::string_view what, const std::exception_ptr& e) noexcept;
};

/// Where report_exceptions writes (stderr by default); a process with its own log sets it once,
/// before any coroutine runs. Null restores stderr.
using exception_reporter = void (*)(std::string_view line) noexcept;
void set_exception_reporter(exception_reporter reporter) noexcept;

} // namespace tether
