#pragma once
// One worker: its thread and io_context, its listeners, the strings and heads it reuses from one
// request to the next. Its upstream pools are in the hosts (upstream::host::pools, at its id).

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "tether/core/random.hpp"
#include "tether/net/fd_passing.hpp"

#include "message_head.hpp"
#include "shared_state.hpp"

namespace tether::proxy::detail {

class session;

struct worker {
  explicit worker(shared_state& s, std::size_t index)
      : shared{s}, id{index}, random{default_random::entropy_seed()} {}

  shared_state& shared;
  std::size_t id;
  /// Strings for the requests in flight, kept with their capacity when a request ends: no
  /// allocation per request, and nothing held by idle connections. Like `heads`, declared
  /// before `io`: frames still pending at a hard stop give theirs back when `io` goes.
  std::vector<std::string> spare_strings;
  std::size_t spare_bytes = 0; // their capacity, in all
  head_pool heads;
  std::set<session*> sessions; // before `io` too: a session's destructor leaves it
  /// One thread runs it, and every socket on it is touched only from that thread (start and stop
  /// reach the worker through posts; sockets are made before its thread starts and destroyed
  /// after it joins). So the reactor takes no lock per socket operation (Asio's "unsafe I/O"
  /// hint); posts and timers keep theirs, since other threads post to a worker.
  asio::io_context io{ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  asio::steady_timer buffer_sweep{io}; // with TLS listeners: idle sessions' buffers, every second
  /// Its listening sockets, each with its listener's name: one per listener, or more after a
  /// take-over from a process that had more workers.
  struct listening {
    std::unique_ptr<asio::ip::tcp::acceptor> acceptor;
    std::string listener;
  };
  std::vector<listening> acceptors;
  /// Sockets bound for it (at start, or by a reload) that it has not begun accepting on.
  std::vector<std::pair<std::string, net::owned_fd>> adopting;
  /// The newest generation (routes and clusters); set on this worker's thread.
  std::shared_ptr<const generation> gen;
  default_random random;
  std::thread thread;
  std::shared_ptr<asio::executor_work_guard<asio::io_context::executor_type>> work;
};

/// A string from the worker's spares for as long as it lives.
class borrowed_string {
public:
  explicit borrowed_string(worker& w) : w_{w} {
    if (!w_.spare_strings.empty()) {
      s_ = std::move(w_.spare_strings.back());
      w_.spare_strings.pop_back();
      w_.spare_bytes -= s_.capacity();
    }
    s_.clear();
  }
  borrowed_string(const borrowed_string&) = delete;
  borrowed_string& operator=(const borrowed_string&) = delete;
  ~borrowed_string() {
    // Kept up to 1 MiB in all: enough for the worker's usual requests in flight, while a burst
    // of large responses does not leave its buffers behind.
    if (s_.capacity() <= 64 * 1024 && w_.spare_bytes + s_.capacity() <= 1024 * 1024) {
      w_.spare_bytes += s_.capacity();
      w_.spare_strings.push_back(std::move(s_));
    }
  }
  std::string& get() noexcept { return s_; }

private:
  worker& w_;
  std::string s_;
};

} // namespace tether::proxy::detail
