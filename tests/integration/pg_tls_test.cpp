// tether's PostgreSQL pool over TLS: libpq does TLS itself (sslmode), and this shows it works
// through the pool against a real server started with ssl=on and the test CA's certificate
// (support/make_test_ca.sh), and that a certificate the client refuses is a clear pool error.
#include "tether/pg/pool.hpp"

#include <gtest/gtest.h>

#include <future>

#include <asio/co_spawn.hpp>
#include <asio/use_future.hpp>

#include "pg_server.hpp"
#include "test_ca.hpp"
#include "tether/core/error.hpp"

namespace tether::pg {
namespace {

using namespace std::chrono_literals;
using testing::pg_server;
using testing::test_ca;

pg_server* server = nullptr;

class pg_tls_environment : public ::testing::Environment {
public:
  void SetUp() override {
    if (pg_server::find_binaries()) {
      const auto& ca = test_ca::get();
      server = new pg_server{pg_server::tls_files{ca.path("server.pem"), ca.path("server.key")}};
    }
  }
  void TearDown() override {
    delete server;
    server = nullptr;
  }
};
const auto* const environment = ::testing::AddGlobalTestEnvironment(new pg_tls_environment);

struct outcome {
  std::error_code error;
  std::string value;
  std::string detail; // the connector's last error, when the acquire failed
};

asio::awaitable<outcome> ask(std::shared_ptr<pool> p, std::string sql) {
  outcome out;
  auto lease = co_await p->async_acquire();
  if (lease.error) {
    out.error = lease.error;
    out.detail = p->get_connector().last_error();
    co_return out;
  }
  auto result = co_await lease.connection->query(sql, {});
  out.error = result.error;
  if (!result.error && result.rows.rows() > 0) {
    out.value = result.rows.get(0, 0);
  }
  co_return out;
}

outcome run(const std::string& conninfo, const std::string& sql) {
  asio::io_context io;
  tether::pool::pool_options options;
  options.min_idle = 0;
  options.acquire_timeout = 5s;
  auto p = pool::create(io.get_executor(), connector{{conninfo}}, options);
  p->start();
  auto done = asio::co_spawn(io, ask(p, sql), asio::use_future);
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (done.wait_for(0s) != std::future_status::ready &&
         std::chrono::steady_clock::now() < give_up) {
    io.run_for(5ms);
  }
  return done.get();
}

struct pg_tls : ::testing::Test {
  void SetUp() override {
    if (server == nullptr) {
      GTEST_SKIP() << "PostgreSQL is not installed (scripts/setup.sh installs it)";
    }
  }
  const test_ca& ca = test_ca::get();
};

TEST_F(pg_tls, verify_full_connects_through_the_pool_over_tls) {
  const auto got =
      run(server->conninfo("host=localhost sslmode=verify-full sslrootcert=" + ca.path("ca.pem")),
          "SELECT ssl::text || ' ' || version FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  ASSERT_FALSE(got.error) << got.error.message() << ": " << got.detail;
  EXPECT_EQ(got.value, "true TLSv1.3");
}

TEST_F(pg_tls, an_untrusted_certificate_is_a_clear_pool_error) {
  // The server's certificate is not signed by this root.
  const auto got =
      run(server->conninfo("host=localhost sslmode=verify-full sslrootcert=" + ca.path("self.pem")),
          "SELECT 1");
  EXPECT_EQ(got.error, make_error_code(tether::errc::tls_certificate_invalid))
      << got.error.message();
  EXPECT_NE(got.detail.find("certificate verify failed"), std::string::npos) << got.detail;
}

TEST_F(pg_tls, a_name_the_certificate_lacks_is_a_hostname_mismatch) {
  const auto got = run(
      server->conninfo("host=db.example.org sslmode=verify-full sslrootcert=" + ca.path("ca.pem")),
      "SELECT 1");
  EXPECT_EQ(got.error, make_error_code(tether::errc::tls_hostname_mismatch))
      << got.error.message() << ": " << got.detail;
  EXPECT_NE(got.detail.find("does not match host name"), std::string::npos) << got.detail;
}

} // namespace
} // namespace tether::pg
