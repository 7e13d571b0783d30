// Acquire + release of a pooled connection, tether's pool against a mutex + condition-variable
// pool (bench/baseline_pool.hpp), in one run:
//   - uncontended: one thread;
//   - two threads: tether's design gives each worker thread its own pool on its own io_context
//     (shared nothing, design.md's runtime model); the baseline is one pool both threads share,
//     which is how such pools are used.
//
//   cmake --build --preset release --target tether_pool_bench
//   ./build/release/bench/tether_pool_bench
#include <benchmark/benchmark.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include "baseline_pool.hpp"
#include "tether/pool/connection_pool.hpp"

namespace {

struct bench_connection {
  int id = 0;
};

// Connects at once and never fails: the benchmark measures the pool, not a network.
struct bench_connector {
  using connection_type = bench_connection;
  asio::awaitable<std::error_code> async_connect(std::unique_ptr<bench_connection>& out) {
    out = std::make_unique<bench_connection>();
    co_return std::error_code{};
  }
  asio::awaitable<bool> async_validate(bench_connection&) { co_return true; }
  bool is_usable(bench_connection&) { return true; }
  void close(bench_connection&) {}
};

using pool_type = tether::pool::connection_pool<bench_connector>;

asio::awaitable<void> acquire_release_loop(std::shared_ptr<pool_type> pool,
                                           benchmark::State& state) {
  for (auto _ : state) {
    auto r = co_await pool->async_acquire();
    benchmark::DoNotOptimize(r.connection->id);
  } // the lease drops here: the connection goes back
  co_await pool->async_close();
}

// Each calling thread: its own io_context and pool, as a tether worker has. `Precise` picks the
// pool's clock: the default coarse clock, or the precise monotonic clock.
template <bool Precise>
void tether_pool_acquire_release(benchmark::State& state) {
  asio::io_context io{1};
  tether::pool::pool_options options;
  options.max_size = 4;
  const tether::clock& clock =
      Precise ? static_cast<const tether::clock&>(tether::monotonic_clock::instance())
              : tether::coarse_monotonic_clock::instance();
  auto pool = pool_type::create(io.get_executor(), bench_connector{}, options, clock);
  pool->start();
  io.run_for(std::chrono::milliseconds{10}); // prefill
  io.restart();
  asio::co_spawn(io, acquire_release_loop(pool, state), asio::detached);
  io.run();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(tether_pool_acquire_release<false>)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(tether_pool_acquire_release<true>)->Threads(1)->Threads(2)->UseRealTime();

tether::bench::baseline_pool<bench_connection>* shared_baseline = nullptr;

// One pool shared by every calling thread, behind a mutex and a condition variable.
void baseline_pool_acquire_release(benchmark::State& state) {
  if (state.thread_index() == 0) {
    shared_baseline = new tether::bench::baseline_pool<bench_connection>{4};
  }
  for (auto _ : state) {
    auto c = shared_baseline->acquire();
    benchmark::DoNotOptimize(c->id);
    shared_baseline->release(std::move(c));
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    delete shared_baseline;
  }
}
BENCHMARK(baseline_pool_acquire_release)->Threads(1)->Threads(2)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
