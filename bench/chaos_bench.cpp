// tether chaos with no toxics against a direct connection, same run, on loopback:
//   1. a bulk transfer (1 GiB by default) into a server that discards it: throughput;
//   2. small request/response exchanges (1 byte each way) on one connection: exchanges/s.
//
//   tether_chaos_bench [gibibytes=1] [exchanges=100000]
//
// The proxy runs in-process on its own thread, as `tether chaos` runs it; the sender, the
// receiver and the proxy share this machine's cores, as they would in a load test.
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <nlohmann/json.hpp>

#include "tether/chaos/api.hpp"

namespace {

using steady = std::chrono::steady_clock;

int listen_on_loopback(std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::listen(fd, 64);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

int connect_to(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("connect");
    std::exit(1);
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/// A loopback server: `discard` reads everything; otherwise it echoes. One connection at a time.
class server {
public:
  explicit server(bool discard) : fd_{listen_on_loopback(port_)} {
    thread_ = std::thread{[this, discard] {
      for (;;) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) {
          return;
        }
        const int one = 1;
        ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::vector<char> buf(256 * 1024);
        for (;;) {
          const auto n = ::recv(c, buf.data(), buf.size(), 0);
          if (n <= 0) {
            break;
          }
          received_ += static_cast<std::uint64_t>(n);
          if (!discard && ::send(c, buf.data(), static_cast<std::size_t>(n), 0) != n) {
            break;
          }
        }
        ::close(c);
        done_ = true;
      }
    }};
  }
  ~server() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] bool done() const { return done_.load(); }
  void reset() {
    done_ = false;
    received_ = 0;
  }

private:
  std::uint16_t port_ = 0;
  int fd_;
  std::atomic<std::uint64_t> received_{0};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Sends `bytes` to `port` and waits for the receiver to have read them all: seconds taken.
double transfer(std::uint16_t port, std::uint64_t bytes, server& sink) {
  sink.reset();
  const int fd = connect_to(port);
  std::vector<char> buf(256 * 1024, 'x');
  const auto start = steady::now();
  std::uint64_t left = bytes;
  while (left > 0) {
    const auto n = ::send(fd, buf.data(), std::min<std::uint64_t>(left, buf.size()), 0);
    if (n <= 0) {
      std::perror("send");
      std::exit(1);
    }
    left -= static_cast<std::uint64_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  char c = 0;
  (void)::recv(fd, &c, 1, 0); // the receiver closes once it has read everything
  const double took = std::chrono::duration<double>(steady::now() - start).count();
  ::close(fd);
  while (!sink.done()) {
    std::this_thread::yield();
  }
  return took;
}

// `count` one-byte exchanges on one connection: exchanges per second.
double exchanges(std::uint16_t port, int count) {
  const int fd = connect_to(port);
  char c = 'x';
  const auto start = steady::now();
  for (int i = 0; i < count; ++i) {
    if (::send(fd, &c, 1, 0) != 1 || ::recv(fd, &c, 1, MSG_WAITALL) != 1) {
      std::perror("exchange");
      std::exit(1);
    }
  }
  const double took = std::chrono::duration<double>(steady::now() - start).count();
  ::close(fd);
  return count / took;
}

/// HAProxy (Debian's), one thread, TCP mode with splicing on (splice-auto), as the same proxy in
/// front of both servers: the peer that says what a proxy can reach on this machine.
class haproxy_peer {
public:
  haproxy_peer(std::uint16_t sink, std::uint16_t echo) {
    std::uint16_t probe = 0;
    int fd = listen_on_loopback(probe);
    ::close(fd);
    sink_port = probe;
    fd = listen_on_loopback(probe);
    ::close(fd);
    echo_port = probe;
    char dir[] = "/tmp/tether-haproxy-XXXXXX";
    if (::mkdtemp(dir) == nullptr) {
      return;
    }
    config_ = std::string{dir} + "/haproxy.cfg";
    std::ofstream{config_} << "global\n  nbthread 1\n  maxconn 1000\n"
                           << "defaults\n  mode tcp\n  option splice-auto\n  timeout connect 5s\n"
                           << "  timeout client 60s\n  timeout server 60s\n"
                           << "listen sink\n  bind 127.0.0.1:" << sink_port
                           << "\n  server s 127.0.0.1:" << sink << "\n"
                           << "listen echo\n  bind 127.0.0.1:" << echo_port
                           << "\n  server s 127.0.0.1:" << echo << "\n";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execlp("haproxy", "haproxy", "-db", "-q", "-f", config_.c_str(),
               static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Up when both ports accept (bounded: 5 s).
    for (int i = 0; i < 500 && !ready(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
  }
  ~haproxy_peer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  [[nodiscard]] bool ready() const {
    for (const auto port : {sink_port, echo_port}) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(port);
      const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      ::close(fd);
      if (!ok) {
        return false;
      }
    }
    return true;
  }
  std::uint16_t sink_port = 0;
  std::uint16_t echo_port = 0;

private:
  std::string config_;
  pid_t pid_ = -1;
};

} // namespace

int main(int argc, char** argv) {
  const double gib = argc > 1 ? std::atof(argv[1]) : 1.0;
  const int count = argc > 2 ? std::atoi(argv[2]) : 100000;
  if (gib <= 0 || count <= 0) {
    std::fprintf(stderr, "usage: %s [gibibytes>0] [exchanges>0]\n", argv[0]);
    return 2;
  }
  const auto bytes = static_cast<std::uint64_t>(gib * 1024 * 1024 * 1024);
  server sink{true};
  server echo{false};

  asio::io_context io{1};
  auto work = asio::make_work_guard(io);
  tether::chaos::api chaos{io.get_executor(), 1};
  std::uint16_t sink_proxy = 0;
  std::uint16_t echo_proxy = 0;
  {
    // Proxies made through the API, on the proxy's thread, before it starts running.
    for (auto [name, port, out] : {std::tuple{"sink", sink.port(), &sink_proxy},
                                   std::tuple{"echo", echo.port(), &echo_proxy}}) {
      tether::http::server_request r;
      r.method = "POST";
      r.target = "/proxies";
      r.body = nlohmann::json{{"name", name},
                              {"listen", "127.0.0.1:0"},
                              {"upstream", "127.0.0.1:" + std::to_string(port)}}
                   .dump();
      const auto reply = chaos.handle(r);
      const auto listen = nlohmann::json::parse(reply.body)["listen"].get<std::string>();
      *out = static_cast<std::uint16_t>(std::stoi(listen.substr(listen.rfind(':') + 1)));
    }
  }
  std::thread proxy_thread{[&io] { io.run(); }};

  std::printf("loopback, no toxics; %.2f GiB transfer, %d one-byte exchanges\n\n", gib, count);
  const double direct_s = transfer(sink.port(), bytes, sink);
  const double proxied_s = transfer(sink_proxy, bytes, sink);
  const double direct_x = exchanges(echo.port(), count);
  const double proxied_x = exchanges(echo_proxy, count);

  double haproxy_s = 0;
  double haproxy_x = 0;
  {
    haproxy_peer haproxy{sink.port(), echo.port()};
    if (haproxy.ready()) {
      haproxy_s = transfer(haproxy.sink_port, bytes, sink);
      haproxy_x = exchanges(haproxy.echo_port, count);
    }
  }

  const double direct_mbs = static_cast<double>(bytes) / direct_s / 1e6;
  const double proxied_mbs = static_cast<double>(bytes) / proxied_s / 1e6;
  std::printf("| path | transfer MB/s | exchanges/s |\n|---|---:|---:|\n");
  std::printf("| direct | %.0f | %.0f |\n", direct_mbs, direct_x);
  std::printf("| through tether chaos | %.0f | %.0f |\n", proxied_mbs, proxied_x);
  if (haproxy_s > 0) {
    std::printf("| through HAProxy (TCP mode, 1 thread) | %.0f | %.0f |\n",
                static_cast<double>(bytes) / haproxy_s / 1e6, haproxy_x);
  }
  std::printf("\ntether chaos / direct: throughput %.2f, exchanges %.2f\n",
              proxied_mbs / direct_mbs, proxied_x / direct_x);
  if (haproxy_s > 0) {
    const double haproxy_mbs = static_cast<double>(bytes) / haproxy_s / 1e6;
    std::printf("tether chaos / HAProxy: throughput %.2f, exchanges %.2f\n",
                proxied_mbs / haproxy_mbs, proxied_x / haproxy_x);
  }

  work.reset();
  asio::post(io, [&] { chaos.stop_all(); });
  io.stop();
  proxy_thread.join();
  return 0;
}
