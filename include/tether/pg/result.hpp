#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <libpq-fe.h>

namespace tether::pg {

/// A bytea value, decoded from the server's hex output ("\x00ff").
using bytes = std::vector<std::uint8_t>;
/// A timestamp or timestamptz value, in UTC with microseconds, as PostgreSQL keeps them.
using timestamp = std::chrono::sys_time<std::chrono::microseconds>;

/// Thrown by result::value when a cell cannot be read as the type asked for: a NULL read as a
/// type that has no NULL (ask for std::optional<T>), text that is not a T, a number out of T's
/// range, a column that does not exist. what() names the column, the row and the text.
class conversion_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

namespace detail {
// Parsers from libpq's text format (the server's output functions with DateStyle ISO and
// bytea_output hex, both PostgreSQL's defaults). Each returns false for text that is not a T.
bool parse_value(std::string_view text, bool& out) noexcept;
bool parse_value(std::string_view text, std::int16_t& out) noexcept;
bool parse_value(std::string_view text, std::int32_t& out) noexcept;
bool parse_value(std::string_view text, std::int64_t& out) noexcept;
bool parse_value(std::string_view text, float& out) noexcept;
bool parse_value(std::string_view text, double& out) noexcept;
bool parse_value(std::string_view text, std::string& out);
bool parse_value(std::string_view text, std::string_view& out) noexcept;
bool parse_value(std::string_view text, bytes& out);
bool parse_value(std::string_view text, timestamp& out) noexcept;

// The name of a type for conversion_error's message ("int32", "timestamp", ...).
template <class T>
constexpr const char* type_name() noexcept {
  if constexpr (std::is_same_v<T, bool>) {
    return "bool";
  } else if constexpr (std::is_same_v<T, std::int16_t>) {
    return "int16";
  } else if constexpr (std::is_same_v<T, std::int32_t>) {
    return "int32";
  } else if constexpr (std::is_same_v<T, std::int64_t>) {
    return "int64";
  } else if constexpr (std::is_same_v<T, float>) {
    return "float";
  } else if constexpr (std::is_same_v<T, double>) {
    return "double";
  } else if constexpr (std::is_same_v<T, bytes>) {
    return "bytea";
  } else if constexpr (std::is_same_v<T, timestamp>) {
    return "timestamp";
  } else {
    static_assert(std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view>,
                  "pg::result::value reads bool, std::int16_t, std::int32_t, std::int64_t, "
                  "float, double, std::string, std::string_view, pg::bytes, pg::timestamp");
    return "string";
  }
}

template <class T>
struct optional_of {
  using type = T;
  static constexpr bool nullable = false;
};
template <class T>
struct optional_of<std::optional<T>> {
  using type = T;
  static constexpr bool nullable = true;
};
} // namespace detail

/// The rows of a query, owning libpq's PGresult. Cells come as text (libpq's text format) with
/// get(), or read as C++ values with value<T>().
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
  /// The index of the column named `name` (exact, case-sensitive), or -1.
  [[nodiscard]] int column_index(std::string_view name) const noexcept;
  /// The command's tag as the server sent it: "SELECT 3", "INSERT 0 1", "COMMIT", or "ROLLBACK"
  /// for a COMMIT of a failed transaction.
  [[nodiscard]] std::string_view command() const noexcept {
    return r_ ? PQcmdStatus(r_.get()) : "";
  }
  /// Rows a command touched (INSERT, UPDATE, DELETE), as the server reported.
  [[nodiscard]] std::string_view affected() const noexcept {
    return r_ ? PQcmdTuples(r_.get()) : "";
  }

  /// The cell at (row, column) read as T: bool, std::int16_t, std::int32_t, std::int64_t, float,
  /// double, std::string, std::string_view (a view into this result), pg::bytes (bytea) or
  /// pg::timestamp (timestamp, timestamptz, date). std::optional<T> gives std::nullopt for NULL.
  /// Throws conversion_error, naming the column, row and text, when the cell is not a T.
  template <class T>
  [[nodiscard]] T value(int row, int column) const {
    using type = typename detail::optional_of<T>::type;
    check(row, column, detail::type_name<type>());
    if (is_null(row, column)) {
      if constexpr (detail::optional_of<T>::nullable) {
        return std::nullopt;
      } else {
        fail(row, column, detail::type_name<type>());
      }
    }
    type out{};
    if (!detail::parse_value(get(row, column), out)) {
      fail(row, column, detail::type_name<type>());
    }
    return out;
  }
  /// The cell in the column named `name`; conversion_error if there is no such column.
  template <class T>
  [[nodiscard]] T value(int row, std::string_view name) const {
    const int column = column_index(name);
    if (column < 0) {
      no_column(name);
    }
    return value<T>(row, column);
  }

private:
  // Throws conversion_error when (row, column) is outside the result.
  void check(int row, int column, const char* type) const;
  // Throws conversion_error for a cell that is NULL or not a `type`.
  [[noreturn]] void fail(int row, int column, const char* type) const;
  [[noreturn]] void no_column(std::string_view name) const;

  std::unique_ptr<PGresult, void (*)(PGresult*)> r_{nullptr, &PQclear};
};

/// What a query gives: rows, or an error with the server's words and SQLSTATE.
struct query_outcome {
  std::error_code error;
  /// What went wrong, on one line: the server's primary message ("division by zero"), libpq's
  /// for a lost session, or tether's (a timeout, a COPY). Empty without an error.
  std::string message;
  std::string detail;   ///< the server's DETAIL, when it gave one ("Key (id)=(1) already exists.")
  std::string hint;     ///< the server's HINT, when it gave one
  std::string sqlstate; ///< e.g. "57014" (query_canceled), "23505" (unique_violation)
  pg::result rows;

  explicit operator bool() const noexcept { return !error; }
};

} // namespace tether::pg
