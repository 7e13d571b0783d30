#pragma once

// The baseline tether's pool is measured against: the classic blocking pool, one mutex and one
// condition variable around a stack of connections, shared by every thread. Written here only
// for the benchmark.

#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

namespace tether::bench {

template <class Connection>
class baseline_pool {
public:
  explicit baseline_pool(std::size_t size) {
    for (std::size_t i = 0; i < size; ++i) {
      idle_.push_back(std::make_unique<Connection>());
    }
  }

  std::unique_ptr<Connection> acquire() {
    std::unique_lock lock{mutex_};
    ready_.wait(lock, [this] { return !idle_.empty(); });
    auto c = std::move(idle_.back());
    idle_.pop_back();
    return c;
  }

  void release(std::unique_ptr<Connection> c) {
    {
      const std::lock_guard lock{mutex_};
      idle_.push_back(std::move(c));
    }
    ready_.notify_one();
  }

private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<std::unique_ptr<Connection>> idle_;
};

} // namespace tether::bench
