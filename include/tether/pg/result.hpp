#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include <libpq-fe.h>

namespace tether::pg {

/// The rows of a query, owning libpq's PGresult. Values are text (libpq's text format).
class result {
public:
  result() = default;
  explicit result(PGresult* r) noexcept : r_{r, &PQclear} {}

  [[nodiscard]] int rows() const noexcept { return r_ ? PQntuples(r_.get()) : 0; }
  [[nodiscard]] int columns() const noexcept { return r_ ? PQnfields(r_.get()) : 0; }
  [[nodiscard]] bool is_null(int row, int column) const noexcept {
    return PQgetisnull(r_.get(), row, column) != 0;
  }
  /// The value at (row, column) as text; empty for NULL (check is_null).
  [[nodiscard]] std::string_view get(int row, int column) const noexcept {
    return {PQgetvalue(r_.get(), row, column),
            static_cast<std::size_t>(PQgetlength(r_.get(), row, column))};
  }
  /// The column's name; empty for a column that does not exist.
  [[nodiscard]] std::string_view column_name(int column) const noexcept {
    const char* name = r_ ? PQfname(r_.get(), column) : nullptr;
    return name == nullptr ? std::string_view{} : std::string_view{name};
  }
  /// Rows a command touched (INSERT, UPDATE, DELETE), as the server reported.
  [[nodiscard]] std::string_view affected() const noexcept {
    return r_ ? PQcmdTuples(r_.get()) : "";
  }

private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> r_{nullptr, &PQclear};
};

/// What a query gives: rows, or an error with the server's message and SQLSTATE.
struct query_outcome {
  std::error_code error;
  std::string message;  ///< the server's (or libpq's) message when there is an error
  std::string sqlstate; ///< e.g. "57014" (query_canceled), "23505" (unique_violation)
  pg::result rows;

  explicit operator bool() const noexcept { return !error; }
};

} // namespace tether::pg
