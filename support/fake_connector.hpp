#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <set>
#include <system_error>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

namespace tether::testing {

/// A connection the fake connector made: an id and whether the "peer" is still there.
struct fake_connection {
  int id = 0;
  std::atomic<int> holders{0}; ///< stress tests count leases holding it at once (must stay <= 1)
  bool alive = true;           ///< false: the peer went away (is_usable and validate fail)
  bool reusable = true;        ///< false: it may not be pooled again when it comes back
  bool dirty = false;          ///< true: it needs the connector's reset before it is pooled again
  bool closed = false;
};

/// What a fake_connector has done and will do, shared with the test.
struct fake_connector_state {
  int opened = 0;
  int closed = 0;
  int validations = 0;
  bool validate_result = true;
  int resets = 0;
  bool reset_result = true;
  bool hold_resets = false;              ///< resets wait until release_validations()
  std::deque<std::error_code> failures;  ///< the next connects fail with these, in order
  bool suspend_on_connect = false;       ///< connects complete on a later turn of the loop
  bool hold_validations = false;         ///< validations wait until release_validations()
  std::vector<asio::steady_timer*> held; ///< the validations waiting
  std::set<fake_connection*> live;       ///< connections opened and not closed

  /// Lets every held validation and reset finish (on the next turn of their loop).
  void release_validations() {
    hold_validations = false;
    hold_resets = false;
    for (auto* t : held) {
      t->cancel();
    }
    held.clear();
  }
};

/// A connector for pool unit tests: connects at once (or fails as scripted), counts everything.
class fake_connector {
public:
  using connection_type = fake_connection;

  explicit fake_connector(std::shared_ptr<fake_connector_state> state) : state_{std::move(state)} {}

  asio::awaitable<std::error_code> async_connect(std::unique_ptr<fake_connection>& out) {
    if (state_->suspend_on_connect) {
      // The executor in a local first: g++ 12 miscompiles a co_await nested in another's
      // operands.
      const auto executor = co_await asio::this_coro::executor;
      co_await asio::post(executor, asio::use_awaitable);
    }
    if (!state_->failures.empty()) {
      const auto ec = state_->failures.front();
      state_->failures.pop_front();
      co_return ec;
    }
    out = std::make_unique<fake_connection>();
    out->id = ++state_->opened;
    state_->live.insert(out.get());
    co_return std::error_code{};
  }

  asio::awaitable<bool> async_validate(fake_connection& c) {
    ++state_->validations;
    if (state_->hold_validations) {
      co_await held_here();
    }
    co_return c.alive && state_->validate_result;
  }

  bool needs_reset(fake_connection& c) { return c.dirty; }

  asio::awaitable<bool> async_reset(fake_connection& c) {
    ++state_->resets;
    if (state_->hold_resets) {
      co_await held_here();
    }
    c.dirty = !state_->reset_result;
    co_return state_->reset_result;
  }

  bool is_usable(fake_connection& c) { return c.alive; }
  bool is_reusable(fake_connection& c) { return c.reusable; }

  void close(fake_connection& c) {
    if (!c.closed) {
      c.closed = true;
      ++state_->closed;
      state_->live.erase(&c);
    }
  }

private:
  // Waits until the test releases what is held (release_validations()).
  asio::awaitable<void> held_here() {
    const auto executor = co_await asio::this_coro::executor;
    asio::steady_timer gate{executor, asio::steady_timer::time_point::max()};
    state_->held.push_back(&gate);
    co_await gate.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }

  std::shared_ptr<fake_connector_state> state_;
};

} // namespace tether::testing
