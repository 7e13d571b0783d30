#pragma once
// From the executor a coroutine has (`co_await asio::this_coro::executor`, an any_io_executor)
// to the io_context executor tether's pools and clients run on.

#include <stdexcept>
#include <string>
#include <typeinfo>

#include <asio/any_io_executor.hpp>
#include <asio/io_context.hpp>
#include <asio/require.hpp>

namespace tether {

/// The io_context executor that `executor` wraps. Throws std::invalid_argument, naming `who`,
/// when it wraps something else (a strand, a thread pool): tether's pools and clients run on an
/// io_context's executor, typed, so that no call on their hot path goes through type erasure.
[[nodiscard]] inline asio::io_context::executor_type
io_executor_of(const asio::any_io_executor& executor, const char* who) {
  using untracked = asio::io_context::executor_type;
  using tracked =
      decltype(asio::require(std::declval<untracked>(), asio::execution::outstanding_work.tracked));
  // target<T>() alone is not enough: Debian's Asio (1.22) hands back its target whatever T is
  // asked for, so the type is compared first.
  if (executor.target_type() == typeid(untracked)) {
    return *executor.target<untracked>();
  }
  if (executor.target_type() == typeid(tracked)) {
    return asio::require(*executor.target<tracked>(), asio::execution::outstanding_work.untracked);
  }
  throw std::invalid_argument{std::string{who} +
                              ": the executor is not an io_context's (give io.get_executor(), or "
                              "the executor of a coroutine spawned on an io_context)"};
}

} // namespace tether
