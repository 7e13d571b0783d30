#pragma once

#include <system_error>
#include <type_traits>

namespace tether::pg {

/// Errors of tether's PostgreSQL layer. The server's own message and SQLSTATE travel beside the
/// code (query_outcome::message, ::sqlstate).
enum class errc {
  connect_failed = 1,      ///< the server could not be reached or refused the session
  query_failed,            ///< the server answered the query with an error (see sqlstate)
  query_timeout,           ///< the per-query timeout passed; the query was cancelled on the server
  connection_lost,         ///< the connection broke mid-query; the query's fate is unknown
  busy,                    ///< the connection is already running a query
  transaction_rolled_back, ///< COMMIT rolled the transaction back: a statement in it had failed
  no_transaction,          ///< a transaction's statement, commit or rollback while it is not open
  pipeline_aborted,        ///< not run: an earlier statement of its pipeline failed
};

/// The category of tether::pg::errc; its name is "tether.pg".
[[nodiscard]] const std::error_category& error_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

} // namespace tether::pg

template <>
struct std::is_error_code_enum<tether::pg::errc> : std::true_type {};
