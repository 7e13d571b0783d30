// tether's small control-plane HTTP server against real clients: curl, tether's own client, and
// raw bytes for what a client library would never send.
#include "tether/http/server.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <future>
#include <thread>

#include <asio/connect.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

namespace tether::http {
namespace {

class server_fixture {
public:
  server_fixture() : work_{io_.get_executor()} {
    server_ = small_server::create(io_.get_executor(), [this](const server_request& r) {
      ++handled;
      server_response out;
      out.body = r.method + " " + std::string{r.path()} + " " + r.body;
      out.content_type = "text/plain";
      if (r.path() == "/missing") {
        out.status = 404;
      }
      return out;
    });
    const auto ec = server_->listen("127.0.0.1", 0);
    EXPECT_FALSE(ec) << ec.message();
    thread_ = std::thread{[this] { io_.run(); }};
  }
  ~server_fixture() {
    std::promise<void> stopped;
    asio::post(io_, [&] {
      server_->stop();
      stopped.set_value();
    });
    stopped.get_future().wait();
    work_.reset();
    io_.stop();
    thread_.join();
  }
  std::uint16_t port() const { return server_->port(); }

  // Sends raw bytes and reads until the server closes (bounded by a 5 s receive timeout).
  std::string raw(const std::string& bytes) {
    asio::io_context io;
    asio::ip::tcp::socket s{io};
    s.connect({asio::ip::make_address("127.0.0.1"), port()});
    timeval tv{5, 0};
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    asio::write(s, asio::buffer(bytes));
    s.shutdown(asio::socket_base::shutdown_send);
    std::string out;
    std::error_code ec;
    asio::read(s, asio::dynamic_buffer(out), ec);
    return out;
  }

  std::atomic<int> handled{0};

private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::shared_ptr<small_server> server_;
  std::thread thread_;
};

std::string run(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
    out.append(buf, n);
  }
  ::pclose(p);
  return out;
}

TEST(small_server, answers_curl_with_keep_alive) {
  server_fixture f;
  const auto base = "http://127.0.0.1:" + std::to_string(f.port());
  // Two URLs on one curl: the second rides the first's connection.
  const auto out = run("curl -sS -v --max-time 5 " + base + "/a " + base + "/missing 2>&1");
  EXPECT_NE(out.find("GET /a "), std::string::npos) << out;
  EXPECT_NE(out.find("< HTTP/1.1 404 Not Found"), std::string::npos) << out;
  EXPECT_NE(out.find("Re-using existing connection"), std::string::npos) << out;
  const auto posted = run("curl -sS --max-time 5 -d 'x=1' " + base + "/p");
  EXPECT_EQ(posted, "POST /p x=1");
}

TEST(small_server, answers_pipelined_requests_in_order) {
  server_fixture f;
  const auto out = f.raw("GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
                         "POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                         "GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  const auto one = out.find("GET /one ");
  const auto two = out.find("POST /two abc");
  const auto three = out.find("GET /three ");
  ASSERT_NE(one, std::string::npos) << out;
  ASSERT_NE(two, std::string::npos) << out;
  ASSERT_NE(three, std::string::npos) << out;
  EXPECT_LT(one, two);
  EXPECT_LT(two, three);
  EXPECT_NE(out.find("Connection: close"), std::string::npos);
}

TEST(small_server, rejects_malformed_requests_with_the_reason) {
  server_fixture f;
  const auto smuggle = f.raw("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  EXPECT_EQ(smuggle.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0U) << smuggle;
  EXPECT_NE(smuggle.find("Transfer-Encoding"), std::string::npos) << smuggle;
  const auto big = f.raw("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n");
  EXPECT_EQ(big.rfind("HTTP/1.1 413 Content Too Large\r\n", 0), 0U) << big;
  EXPECT_EQ(f.handled.load(), 0);
}

} // namespace
} // namespace tether::http
