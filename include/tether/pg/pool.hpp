#pragma once

#include "tether/pg/connection.hpp"
#include "tether/pg/transaction.hpp"
#include "tether/pool/connection_pool.hpp"

namespace tether::pg {

/// A pool of PostgreSQL sessions: tether's generic pool over pg::connector, with every rule and
/// metric of the pool (max size, min idle, acquire timeout, idle timeout, max lifetime with
/// jitter, keepalive probe `SELECT 1`, validation on borrow, leak detection).
///
///   auto pool = pg::pool::create(io.get_executor(), pg::connector{{"host=127.0.0.1 dbname=app"}},
///                                options);
///   pool->start();
///   auto lease = co_await pool->async_acquire();
///   const pg::param args[] = {"42"};
///   auto rows = co_await lease.connection->query("SELECT name FROM users WHERE id = $1", args,
///                                                2s);
using pool = tether::pool::connection_pool<connector>;
/// A leased session; dropping it gives it back (or closes it, if left in a transaction).
using lease = pool::lease;

} // namespace tether::pg
