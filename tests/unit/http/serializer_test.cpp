#include "tether/http/serializer.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tether::http {
namespace {

// Parses `text` and hands its head to `f` (views are valid only there).
template <class F>
void with_head(parser::kind k, const std::string& text, F f) {
  struct handler final : parser_handler {
    F* f;
    void on_head(const message_head& h) override { (*f)(h); }
    void on_body(std::string_view) override {}
    void on_message_complete() override {}
  } h;
  h.f = &f;
  parser p{k};
  p.feed(text, h);
  ASSERT_FALSE(p.error()) << p.error().message();
}

TEST(http_serializer, drops_hop_by_hop_fields_and_those_connection_names) {
  const std::string in = "GET /a?b HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive, X-Secret\r\n"
                         "Keep-Alive: timeout=5\r\nX-Secret: 1\r\nTE: trailers\r\nTrailer: x\r\n"
                         "Proxy-Authorization: basic\r\nUpgrade: h2c\r\nAccept: */*\r\n\r\n";
  std::string out;
  const header via[] = {{"Via", "1.1 tether"}};
  with_head(parser::kind::request, in, [&](const message_head& h) {
    write_request_head(out, h, {false, via});
  });
  EXPECT_EQ(out, "GET /a?b HTTP/1.1\r\nHost: shop\r\nAccept: */*\r\nVia: 1.1 tether\r\n\r\n");
}

TEST(http_serializer, keeps_upgrade_when_tunnelling_and_framing_always) {
  const std::string in = "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, Content-Length\r\n"
                         "Upgrade: websocket\r\nContent-Length: 0\r\n\r\n";
  std::string out;
  with_head(parser::kind::request, in, [&](const message_head& h) {
    write_request_head(out, h, {true, {}});
  });
  EXPECT_EQ(out, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nContent-Length: 0\r\n"
                 "Connection: upgrade\r\n\r\n");
}

TEST(http_serializer, writes_responses_and_chunks_that_parse_back) {
  const std::string in = "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n"
                         "Connection: close\r\n\r\n";
  std::string out;
  with_head(parser::kind::response, in,
            [&](const message_head& h) { write_response_head(out, h); });
  write_chunk(out, "hello");
  write_chunk(out, "");
  write_chunk(out, std::string(300, 'x'));
  write_last_chunk(out);
  EXPECT_EQ(out.substr(0, out.find("\r\n\r\n") + 4),
            "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n");
  struct body final : parser_handler {
    std::string data;
    bool done = false;
    void on_head(const message_head&) override {}
    void on_body(std::string_view piece) override { data += piece; }
    void on_message_complete() override { done = true; }
  } b;
  parser p{parser::kind::response};
  p.feed(out, b);
  EXPECT_FALSE(p.error());
  EXPECT_TRUE(b.done);
  EXPECT_EQ(b.data, "hello" + std::string(300, 'x'));
}

} // namespace
} // namespace tether::http
