#pragma once
// A session's one deadline, kept by one timer.

#include <chrono>
#include <memory>

#include <asio/any_io_executor.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

namespace tether::proxy::detail {

using steady = std::chrono::steady_clock;

/// A session's one deadline, kept by one timer: when it passes, the sockets it guards are
/// cancelled and their pending reads end with operation_aborted. Cheaper than racing every read
/// against a timer (a coroutine pair per read), and shared with the timer's handler so that a
/// handler running after the session ended finds `alive` false and does nothing.
struct watchdog : std::enable_shared_from_this<watchdog> {
  explicit watchdog(const asio::any_io_executor& ex) : timer{ex} {}

  asio::steady_timer timer;
  steady::time_point deadline = steady::time_point::max();
  steady::time_point armed = steady::time_point::max();
  asio::ip::tcp::socket* client = nullptr;
  asio::ip::tcp::socket* upstream = nullptr;
  asio::steady_timer* sleeper = nullptr; // a retry's backoff
  bool fired = false;
  bool alive = true;
  bool aborted = false;

  /// Ends what the session is doing now and whatever it starts later.
  void abort_now() {
    set(steady::time_point::min());
    aborted = true;
  }

  void set(steady::time_point t) {
    if (aborted) {
      return; // an abort is for good: no later deadline undoes it
    }
    deadline = t;
    fired = false;
    if (t < armed) {
      arm(t);
    }
  }
  void arm(steady::time_point t) {
    armed = t;
    timer.expires_at(t); // cancels the wait armed before, whose handler then does nothing
    timer.async_wait([self = shared_from_this()](std::error_code ec) { self->expired(ec); });
  }
  void expired(std::error_code ec) {
    if (!alive || ec == asio::error::operation_aborted) {
      return;
    }
    armed = steady::time_point::max();
    if (steady::now() < deadline) {
      arm(deadline); // the deadline moved later since this wait was armed
      return;
    }
    fired = true;
    std::error_code ignored;
    if (client != nullptr) {
      client->cancel(ignored);
    }
    if (upstream != nullptr) {
      upstream->cancel(ignored);
    }
    if (sleeper != nullptr) {
      sleeper->cancel();
    }
  }
  void stop() {
    alive = false;
    timer.cancel();
  }
};

} // namespace tether::proxy::detail
