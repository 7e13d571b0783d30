// Transactions per second of pgbench's select-only workload (one SELECT on pgbench_accounts by a
// random aid) in one run, against one PostgreSQL started here:
//   1. tether's pg pool: 2 worker threads, each with its own pool of 4 sessions and 4 clients,
//      the simple protocol (query) and prepared statements (execute);
//   2. pgbench -S, persistent connections (the ceiling: what the server gives 8 clients), with
//      the simple protocol and with -M prepared;
//   3. tether's pool running pipelines of 10 prepared SELECTs per lease (libpq's pipeline
//      mode, one round trip each), and pgbench running a script of the same 10 between
//      \startpipeline and \endpipeline;
//   4. pgbench -S -C, a new connection per transaction (what no pool costs);
//   5. pgbench -S through Debian's PgBouncer in transaction mode with a pool of 8.
// Every way is counted in SELECTs per second ("tps": one SELECT is one of pgbench -S's
// transactions).
//
//   cmake --build --preset release --target tether_pg_bench
//   ./build/release/bench/tether_pg_bench [seconds per run, default 5] [rounds, default 3]
//                                         [only the ways whose name contains one of A|B|...]
//
// The ways run in interleaved rounds (each round runs every way once) and the medians are
// compared: this machine is noisy.
//
// Beside each rate, the client's CPU time per transaction: with the server on the same two cores,
// what the client spends is taken from the server, so it bounds the rate a client can reach.
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <latch>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include "pg_server.hpp"
#include "tether/pg/pool.hpp"

namespace {

using namespace std::chrono_literals;
constexpr int clients = 8;
constexpr int workers = 2;
constexpr int accounts = 100000; // pgbench -i -s 1

std::string run_capture(const std::string& command) {
  std::string out;
  if (FILE* p = ::popen(command.c_str(), "r")) {
    char buffer[512];
    while (std::fgets(buffer, sizeof buffer, p) != nullptr) {
      out += buffer;
    }
    ::pclose(p);
  }
  return out;
}

// CPU time in user space and in the kernel, of this process or of its waited-for children, and
// how often they went to sleep (voluntary context switches: each is a wakeup the kernel pays for
// when the server's answer arrives).
struct cpu_time {
  double user = 0;
  double system = 0;
  double sleeps = 0;
  cpu_time operator-(const cpu_time& o) const {
    return {user - o.user, system - o.system, sleeps - o.sleeps};
  }
};

cpu_time cpu_seconds(int who) {
  rusage u{};
  ::getrusage(who, &u);
  const auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return {seconds(u.ru_utime), seconds(u.ru_stime), static_cast<double>(u.ru_nvcsw)};
}

// One run of one way: transactions per second, and the client's CPU per transaction.
struct run {
  double tps = 0;
  double user_us = 0;
  double system_us = 0;
  double sleeps = 0; // per transaction
};

// `per_transaction`: statements in one of pgbench's transactions (a pipeline script's batch),
// so that every way is counted in statements per second.
run pgbench_run(const std::string& args, int per_transaction = 1) {
  const auto cpu_before = cpu_seconds(RUSAGE_CHILDREN);
  const std::string out = run_capture("pgbench " + args + " 2>&1");
  const auto cpu = cpu_seconds(RUSAGE_CHILDREN) - cpu_before;
  std::smatch m;
  run r;
  if (std::regex_search(out, m, std::regex{R"(tps = ([0-9.]+))"})) {
    r.tps = std::stod(m[1]) * per_transaction;
  }
  if (std::regex_search(out, m, std::regex{R"(processed: ([0-9]+))"}) && std::stod(m[1]) > 0) {
    const double statements = std::stod(m[1]) * per_transaction;
    r.user_us = cpu.user * 1e6 / statements;
    r.system_us = cpu.system * 1e6 / statements;
    r.sleeps = cpu.sleeps / statements;
  }
  if (r.tps == 0) {
    std::fprintf(stderr, "pgbench gave no tps:\n%s\n", out.c_str());
  }
  return r;
}

// pgbench -S's statement, as pgbench -M prepared names it for the server.
const tether::pg::statement select_balance{"tether_bench_select",
                                           "SELECT abalance FROM pgbench_accounts WHERE aid = $1"};

// How a tether client sends its SELECTs: one query each (simple protocol), one prepared
// statement each, or `batch` prepared statements in one pipeline (one round trip).
enum class mode { simple, prepared, pipelined };
constexpr std::size_t batch = 10;

// A lease, `batch` SELECTs in one pipeline, the lease back: `batch` statements done.
asio::awaitable<void> pipelined_batch(tether::pg::connection& c, std::minstd_rand& random,
                                      std::atomic<long>* done, std::atomic<long>* failed) {
  std::uniform_int_distribution<int> aid{1, accounts};
  std::array<std::string, batch> ids;
  std::array<tether::pg::param, batch> args;
  std::array<tether::pg::pipelined, batch> statements;
  for (std::size_t i = 0; i < batch; ++i) {
    ids[i] = std::to_string(aid(random));
    args[i] = ids[i];
    statements[i] = {.prepared = &select_balance, .params = {&args[i], 1}};
  }
  const auto outcomes = co_await c.pipeline(statements);
  for (const auto& r : outcomes) {
    (r.error ? failed : done)->fetch_add(1, std::memory_order_relaxed);
  }
}

asio::awaitable<void> client(std::shared_ptr<tether::pg::pool> pool, std::atomic<long>* done,
                             std::atomic<long>* failed, std::atomic<bool>* stop, unsigned seed,
                             mode how) {
  std::minstd_rand random{seed};
  std::uniform_int_distribution<int> aid{1, accounts};
  while (!stop->load(std::memory_order_relaxed)) {
    auto lease = co_await pool->async_acquire();
    if (lease.error) {
      failed->fetch_add(1);
      continue;
    }
    if (how == mode::pipelined) {
      co_await pipelined_batch(*lease.connection, random, done, failed);
      continue;
    }
    if (how == mode::prepared) {
      const std::string id = std::to_string(aid(random));
      const tether::pg::param args[] = {id};
      const auto r = co_await lease.connection->execute(select_balance, args);
      (r.error ? failed : done)->fetch_add(1, std::memory_order_relaxed);
    } else {
      const std::string sql =
          "SELECT abalance FROM pgbench_accounts WHERE aid = " + std::to_string(aid(random)) + ";";
      const auto r = co_await lease.connection->query(sql);
      (r.error ? failed : done)->fetch_add(1, std::memory_order_relaxed);
    }
  }
}

asio::awaitable<void> close_when_stopped(std::shared_ptr<tether::pg::pool> pool,
                                         std::atomic<bool>* stop) {
  asio::steady_timer tick{co_await asio::this_coro::executor};
  while (!stop->load()) {
    tick.expires_after(20ms);
    co_await tick.async_wait(asio::use_awaitable);
  }
  co_await pool->async_close();
}

// Each worker counts on a cache line of its own, as each pgbench thread keeps its own counts: a
// shared counter would move between the cores on every query.
struct alignas(64) counts {
  std::atomic<long> done{0};
  std::atomic<long> failed{0};
};

run tether_run(const std::string& conninfo, std::chrono::seconds duration, mode how) {
  std::array<counts, workers> per_worker;
  const auto total = [&per_worker](std::atomic<long> counts::*which) {
    long sum = 0;
    for (const auto& c : per_worker) {
      sum += (c.*which).load();
    }
    return sum;
  };
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  std::latch warm{workers + 1};
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      asio::io_context io{1};
      tether::pool::pool_options options;
      options.max_size = clients / workers;
      auto pool =
          tether::pg::pool::create(io.get_executor(), tether::pg::connector{{conninfo}}, options);
      pool->start();
      io.run_for(300ms); // sessions open before the clock starts
      io.restart();
      warm.arrive_and_wait();
      for (int c = 0; c < clients / workers; ++c) {
        asio::co_spawn(io,
                       client(pool, &per_worker[static_cast<std::size_t>(w)].done,
                              &per_worker[static_cast<std::size_t>(w)].failed, &stop,
                              static_cast<unsigned>(w * 100 + c), how),
                       asio::detached);
      }
      // io.run(), as a service runs it: Asio keeps its recycled memory (coroutine frames,
      // operations) for the length of a run() call, so a loop of run_for() calls would make
      // every one of them a malloc and a free. The pool closes when the clock stops, and
      // run() returns once the last query is done.
      asio::co_spawn(io, close_when_stopped(pool, &stop), asio::detached);
      io.run();
    });
  }
  warm.arrive_and_wait();
  const long before = total(&counts::done);
  const auto cpu_before = cpu_seconds(RUSAGE_SELF);
  const auto started = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(duration); // a benchmark's measuring window, not a test's wait
  const long counted = total(&counts::done) - before;
  const auto cpu = cpu_seconds(RUSAGE_SELF) - cpu_before;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  stop.store(true);
  for (auto& t : threads) {
    t.join();
  }
  if (const long failed = total(&counts::failed); failed > 0) {
    std::fprintf(stderr, "tether: %ld queries failed\n", failed);
  }
  const double per = counted > 0 ? 1e6 / static_cast<double>(counted) : 0;
  return {static_cast<double>(counted) / seconds, cpu.user * per, cpu.system * per,
          cpu.sleeps * per / 1e6};
}

} // namespace

int main(int argc, char** argv) {
  const std::chrono::seconds duration{argc > 1 ? std::atoi(argv[1]) : 5};
  const int rounds = std::max(1, argc > 2 ? std::atoi(argv[2]) : 3);
  tether::testing::pg_server server;
  const std::string target =
      "-h 127.0.0.1 -p " + std::to_string(server.port()) + " -U postgres postgres";
  if (std::system(("pgbench -q -i -s 1 " + target + " > /dev/null 2>&1").c_str()) != 0) {
    std::fprintf(stderr, "pgbench -i failed\n");
    return 1;
  }
  const std::string load = "-n -S -c " + std::to_string(clients) + " -j " +
                           std::to_string(workers) + " -T " + std::to_string(duration.count());

  // PgBouncer, transaction pooling, in the server's private directory; it refuses to run as
  // root, so it runs as the same user as the server.
  const std::string dir = "/tmp/tether-pgbouncer-" + std::to_string(::getpid());
  std::system(("mkdir -p " + dir).c_str());
  const auto bouncer_port = server.port() + 1;
  {
    std::ofstream ini{dir + "/pgbouncer.ini"};
    ini << "[databases]\npostgres = host=127.0.0.1 port=" << server.port()
        << " dbname=postgres user=postgres\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = "
        << bouncer_port << "\nauth_type = trust\nauth_file = " << dir
        << "/users.txt\npool_mode = transaction\ndefault_pool_size = " << clients
        << "\nmax_client_conn = 100\nunix_socket_dir =\nlogfile = " << dir
        << "/pgbouncer.log\npidfile = " << dir << "/pgbouncer.pid\n";
    std::ofstream users{dir + "/users.txt"};
    users << "\"postgres\" \"\"\n";
  }
  std::system(("chown -R postgres " + dir + " 2>/dev/null").c_str());
  const bool bouncer_up =
      std::system((server.as_user() + "pgbouncer -d " + dir + "/pgbouncer.ini").c_str()) == 0;

  std::printf("pgbench -S workload, %d clients, %lld s per run, %d interleaved rounds, "
              "PostgreSQL on 127.0.0.1:%u\n"
              "us: the client's CPU time per transaction (user + system: medians of each); "
              "sleeps: the client's voluntary context switches per transaction; "
              "PgBouncer's own are not counted\n\n",
              clients, static_cast<long long>(duration.count()), rounds, server.port());
  if (bouncer_up) {
    std::this_thread::sleep_for(300ms); // pgbouncer's listener comes up after it forks
  }
  const std::string bouncer_target =
      "-h 127.0.0.1 -p " + std::to_string(bouncer_port) + " -U postgres postgres";
  // Each round runs every way once, in the same order; the medians are compared.
  struct way {
    const char* name;
    std::function<run()> measure;
    std::vector<double> tps{};
    std::vector<double> user_us{};
    std::vector<double> system_us{};
    std::vector<double> sleeps{};
  };
  // pgbench's own pipeline: a script of `batch` SELECTs between \startpipeline and
  // \endpipeline (pgbench 14+), prepared.
  const std::string script = dir + "/pipeline.sql";
  {
    std::ofstream out{script};
    for (std::size_t i = 0; i < batch; ++i) {
      out << "\\set aid" << i << " random(1, " << accounts << ")\n";
    }
    out << "\\startpipeline\n";
    for (std::size_t i = 0; i < batch; ++i) {
      out << "SELECT abalance FROM pgbench_accounts WHERE aid = :aid" << i << ";\n";
    }
    out << "\\endpipeline\n";
  }
  const std::string pipeline_load = "-n -c " + std::to_string(clients) + " -j " +
                                    std::to_string(workers) + " -T " +
                                    std::to_string(duration.count()) + " -M prepared -f " + script;
  std::vector<way> ways{
      {"tether pg pool (2 workers x 4 sessions)",
       [&] { return tether_run(server.conninfo(), duration, mode::simple); }},
      {"pgbench, persistent connections", [&] { return pgbench_run(load + " " + target); }},
      {"tether pg pool, prepared statements",
       [&] { return tether_run(server.conninfo(), duration, mode::prepared); }},
      {"pgbench -M prepared, persistent connections",
       [&] { return pgbench_run(load + " -M prepared " + target); }},
      {"tether pg pool, pipelines of 10 prepared",
       [&] { return tether_run(server.conninfo(), duration, mode::pipelined); }},
      {"pgbench -M prepared, pipeline script of 10",
       [&] { return pgbench_run(pipeline_load + " " + target, batch); }},
      {"pgbench -C, a connection per transaction",
       [&] { return pgbench_run(load + " -C " + target); }},
      {"pgbench through pgbouncer (transaction mode)",
       [&] { return bouncer_up ? pgbench_run(load + " " + bouncer_target) : run{}; }},
  };
  // To profile a way or compare two closely: the others do not run (their figures read 0).
  const std::string only = argc > 3 ? argv[3] : "";
  const auto chosen = [&only](std::string_view name) {
    std::string_view rest = only;
    for (;;) {
      const auto bar = rest.find('|');
      if (name.find(rest.substr(0, bar)) != std::string_view::npos) {
        return true;
      }
      if (bar == std::string_view::npos) {
        return false;
      }
      rest.remove_prefix(bar + 1);
    }
  };
  for (int round = 0; round < rounds; ++round) {
    for (auto& w : ways) {
      const run r = chosen(w.name) ? w.measure() : run{};
      w.tps.push_back(r.tps);
      w.user_us.push_back(r.user_us);
      w.system_us.push_back(r.system_us);
      w.sleeps.push_back(r.sleeps);
    }
  }
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  for (const auto& w : ways) {
    const double user = median(w.user_us);
    const double system = median(w.system_us);
    std::printf("%-46s %8.0f tps %5.1f us (%4.1f + %4.1f) %4.2f sleeps  (rounds:", w.name,
                median(w.tps), user + system, user, system, median(w.sleeps));
    for (std::size_t i = 0; i < w.tps.size(); ++i) {
      std::printf(" %.0f/%.1f", w.tps[i], w.user_us[i] + w.system_us[i]);
    }
    std::printf(")\n");
  }
  const double pooled = median(ways[0].tps);
  const double direct = median(ways[1].tps);
  const double pooled_prepared = median(ways[2].tps);
  const double direct_prepared = median(ways[3].tps);
  const double pooled_pipelined = median(ways[4].tps);
  const double direct_pipelined = median(ways[5].tps);
  const double per_tx = median(ways[6].tps);
  const double bouncer = median(ways[7].tps);
  std::printf("\ntether pool / connection per transaction: %.1fx\n",
              per_tx > 0 ? pooled / per_tx : 0);
  std::printf("tether pool / pgbouncer:                  %.2fx\n",
              bouncer > 0 ? pooled / bouncer : 0);
  std::printf("tether pool / pgbench persistent:         %.2fx\n",
              direct > 0 ? pooled / direct : 0);
  std::printf("the same, prepared statements:            %.2fx\n",
              direct_prepared > 0 ? pooled_prepared / direct_prepared : 0);
  std::printf("the same, pipelines of %zu:               %.2fx\n", batch,
              direct_pipelined > 0 ? pooled_pipelined / direct_pipelined : 0);
  std::printf("tether pipelined / pgbench -M prepared:   %.2fx\n",
              direct_prepared > 0 ? pooled_pipelined / direct_prepared : 0);

  // Stop the PgBouncer this program started, by the pid it wrote.
  std::ifstream pidfile{dir + "/pgbouncer.pid"};
  pid_t pid = 0;
  if (pidfile >> pid && pid > 0) {
    ::kill(pid, SIGTERM);
  }
  std::this_thread::sleep_for(200ms);
  std::system(("rm -rf " + dir).c_str());
  return 0;
}
