#include "tether/pg/transaction.hpp"

namespace tether::pg {

bool transaction::refuse_unless_open(query_outcome& out) const {
  if (open_ && c_ != nullptr) {
    return false;
  }
  out.error = errc::no_transaction;
  out.message = "the transaction is not open: begin() it first; after commit() or rollback(), "
                "begin another";
  return true;
}

asio::awaitable<query_outcome> transaction::begin(std::string_view sql) {
  if (open_ || c_ == nullptr) {
    query_outcome out;
    out.error = errc::no_transaction;
    out.message = open_ ? "the transaction is already open" : "the transaction was moved from";
    co_return out;
  }
  auto out = co_await c_->query(sql);
  open_ = !out.error && c_->in_transaction();
  if (!out.error && !open_) {
    out.error = errc::no_transaction;
    out.message = "\"" + std::string{sql} + "\" did not open a transaction";
  }
  co_return out;
}

asio::awaitable<query_outcome>
transaction::query(std::string_view sql, std::span<const param> params, clock::duration timeout) {
  query_outcome out;
  if (refuse_unless_open(out)) {
    co_return out;
  }
  co_return co_await c_->query(sql, params, timeout);
}

asio::awaitable<query_outcome>
transaction::execute(const statement& s, std::span<const param> params, clock::duration timeout) {
  query_outcome out;
  if (refuse_unless_open(out)) {
    co_return out;
  }
  co_return co_await c_->execute(s, params, timeout);
}

asio::awaitable<query_outcome> transaction::commit() {
  query_outcome out;
  if (refuse_unless_open(out)) {
    co_return out;
  }
  out = co_await c_->query("COMMIT");
  open_ = out.error == errc::busy; // busy: nothing was sent
  // COMMIT of a transaction in which a statement failed succeeds as a ROLLBACK: say so.
  if (!out.error && out.rows.command() == "ROLLBACK") {
    out.error = errc::transaction_rolled_back;
    out.message = "COMMIT rolled the transaction back: a statement in it had failed";
  }
  co_return out;
}

asio::awaitable<query_outcome> transaction::rollback() {
  query_outcome out;
  if (refuse_unless_open(out)) {
    co_return out;
  }
  out = co_await c_->query("ROLLBACK");
  open_ = out.error == errc::busy; // busy: nothing was sent
  co_return out;
}

} // namespace tether::pg
