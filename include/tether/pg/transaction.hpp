#pragma once

#include <span>
#include <string_view>
#include <utility>

#include <asio/awaitable.hpp>

#include "tether/pg/connection.hpp"

namespace tether::pg {

/// One transaction on one session: begin(), statements, then commit() or rollback().
///
///   pg::transaction tx{*lease.connection};
///   auto begun = co_await tx.begin();
///   if (!begun) { ... begun.message ... }
///   auto moved = co_await tx.query("UPDATE accounts SET ... WHERE id = $1", args);
///   auto done = co_await tx.commit(); // errc::transaction_rolled_back if a statement failed
///
/// Dropped while open (an exception, an early return), it is rolled back before the session
/// runs anything else: by the session's next query or execute, or by the pool when the lease
/// comes back. The session (the lease) must outlive the transaction. A statement, commit or
/// rollback on a transaction that is not open returns errc::no_transaction and sends nothing.
class transaction {
public:
  explicit transaction(connection& c) noexcept : c_{&c} {}
  transaction(transaction&& other) noexcept
      : c_{std::exchange(other.c_, nullptr)}, open_{std::exchange(other.open_, false)} {}
  transaction& operator=(transaction&&) = delete;
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;
  ~transaction() {
    if (open_ && c_ != nullptr) {
      c_->abandon_transaction();
    }
  }

  /// BEGIN, or another statement that opens one ("BEGIN ISOLATION LEVEL SERIALIZABLE",
  /// "BEGIN READ ONLY"). Refused when this transaction is already open.
  asio::awaitable<query_outcome> begin(std::string_view sql = "BEGIN");
  asio::awaitable<query_outcome> query(std::string_view sql, std::span<const param> params = {},
                                       clock::duration timeout = clock::duration::zero());
  asio::awaitable<query_outcome> execute(const statement& s, std::span<const param> params = {},
                                         clock::duration timeout = clock::duration::zero());
  /// COMMIT. When the server rolled back instead (a statement in the transaction had failed,
  /// and COMMIT of a failed transaction is a ROLLBACK), the outcome is
  /// errc::transaction_rolled_back. The transaction is over either way.
  asio::awaitable<query_outcome> commit();
  /// ROLLBACK. The transaction is over either way.
  asio::awaitable<query_outcome> rollback();

  /// True between a successful begin() and commit() or rollback().
  [[nodiscard]] bool open() const noexcept { return open_; }

private:
  // errc::no_transaction unless open.
  [[nodiscard]] bool refuse_unless_open(query_outcome& out) const;

  connection* c_;
  bool open_ = false;
};

} // namespace tether::pg
