#include "tether/http/parser.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tether::http {
namespace {

struct message {
  std::string method, target, reason;
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  body_framing framing = body_framing::none;
  bool keep_alive = false;
  bool complete = false;
};

struct recorder final : parser_handler {
  std::vector<message> messages;
  void on_head(const message_head& h) override {
    message m;
    m.method = std::string{h.method};
    m.target = std::string{h.target};
    m.status = h.status;
    m.reason = std::string{h.reason};
    for (const auto& x : h.headers) {
      m.headers.emplace_back(std::string{x.name}, std::string{x.value});
    }
    m.framing = h.framing;
    m.keep_alive = h.keep_alive;
    messages.push_back(std::move(m));
  }
  void on_body(std::string_view piece) override { messages.back().body += piece; }
  void on_message_complete() override { messages.back().complete = true; }
};

// Feeds `text` in pieces of `step` bytes, each from a fresh buffer.
std::error_code parse(parser& p, recorder& r, const std::string& text, std::size_t step = 0) {
  if (step == 0) {
    p.feed(text, r);
  } else {
    for (std::size_t i = 0; i < text.size() && !p.error(); i += step) {
      const std::string piece = text.substr(i, step);
      p.feed(piece, r);
    }
  }
  return p.error();
}

std::error_code request_error(const std::string& text, parser_limits limits = {}) {
  parser p{parser::kind::request, limits};
  recorder r;
  return parse(p, r, text);
}

TEST(http_parser, parses_a_request_with_a_body_whatever_the_split) {
  const std::string text = "POST /orders?id=7 HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n"
                           "X-Empty:\r\n\r\nhello";
  for (std::size_t step : {0UL, 1UL, 2UL, 7UL, 40UL}) {
    parser p{parser::kind::request};
    recorder r;
    ASSERT_FALSE(parse(p, r, text, step)) << "step " << step;
    ASSERT_EQ(r.messages.size(), 1U);
    const auto& m = r.messages[0];
    EXPECT_EQ(m.method, "POST");
    EXPECT_EQ(m.target, "/orders?id=7");
    ASSERT_EQ(m.headers.size(), 3U);
    EXPECT_EQ(m.headers[0], (std::pair<std::string, std::string>{"Host", "shop"}));
    EXPECT_EQ(m.headers[2].second, "");
    EXPECT_EQ(m.body, "hello");
    EXPECT_EQ(m.framing, body_framing::content_length);
    EXPECT_TRUE(m.keep_alive);
    EXPECT_TRUE(m.complete);
    EXPECT_TRUE(p.idle());
  }
}

TEST(http_parser, header_views_point_into_the_fed_bytes_when_the_head_arrives_whole) {
  const std::string text = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  struct checker final : parser_handler {
    const std::string* buffer = nullptr;
    bool inside = false;
    void on_head(const message_head& h) override {
      const auto* name = h.headers[0].name.data();
      inside = name >= buffer->data() && name < buffer->data() + buffer->size();
    }
    void on_body(std::string_view) override {}
    void on_message_complete() override {}
  } c;
  c.buffer = &text;
  parser p{parser::kind::request};
  p.feed(text, c);
  EXPECT_TRUE(c.inside) << "no copy per header on the hot path";
}

TEST(http_parser, parses_chunked_bodies_and_pipelined_requests) {
  const std::string text = "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "5;name=value\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                           "GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
  for (std::size_t step : {0UL, 1UL, 3UL}) {
    parser p{parser::kind::request};
    recorder r;
    ASSERT_FALSE(parse(p, r, text, step)) << p.error().message();
    ASSERT_EQ(r.messages.size(), 2U);
    EXPECT_EQ(r.messages[0].body, "hello world");
    EXPECT_EQ(r.messages[0].framing, body_framing::chunked);
    EXPECT_EQ(r.messages[1].target, "/b");
    EXPECT_TRUE(r.messages[1].complete);
  }
}

TEST(http_parser, keep_alive_follows_version_and_connection) {
  parser p10{parser::kind::request};
  recorder r10;
  parse(p10, r10, "GET / HTTP/1.0\r\n\r\n");
  EXPECT_FALSE(r10.messages.at(0).keep_alive);
  parser p10k{parser::kind::request};
  recorder r10k;
  parse(p10k, r10k, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_TRUE(r10k.messages.at(0).keep_alive);
  parser p11{parser::kind::request};
  recorder r11;
  parse(p11, r11, "GET / HTTP/1.1\r\nConnection: close \r\n\r\n");
  EXPECT_FALSE(r11.messages.at(0).keep_alive);
  EXPECT_EQ(parse(p11, r11, "GET / HTTP/1.1\r\n\r\n"), make_error_code(errc::data_after_close));
}

TEST(http_parser, refuses_what_lets_one_request_hide_in_another) {
  struct smuggle {
    const char* text;
    errc expected;
  };
  const smuggle cases[] = {
      {"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
       errc::content_length_with_transfer_encoding},
      {"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
       errc::invalid_content_length},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", errc::invalid_transfer_encoding},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
       errc::invalid_transfer_encoding},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", errc::invalid_transfer_encoding},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: \x0b"
       "chunked\r\n\r\n",
       errc::invalid_header},
      {"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", errc::invalid_header},
      {"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", errc::obsolete_line_folding},
      {"GET / HTTP/1.1\nHost: a\r\n\r\n", errc::bare_line_ending},
      {"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", errc::bare_line_ending},
      {"GET  / HTTP/1.1\r\n\r\n", errc::bad_request_line},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
       errc::unsupported_transfer_coding},
      {"GET /a\tb HTTP/1.1\r\n\r\n", errc::invalid_target},
      {"GET /a\fb HTTP/1.1\r\n\r\n", errc::invalid_target},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", errc::invalid_chunk},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n", errc::invalid_chunk},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n", errc::invalid_chunk},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n",
       errc::invalid_chunk},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(request_error(c.text), make_error_code(c.expected)) << c.text;
  }
  // The NUL case needs its length spelled out.
  const std::string with_nul{"GET / HTTP/1.1\r\nHost: a\0z\r\n\r\n", 29};
  EXPECT_EQ(request_error(with_nul), make_error_code(errc::invalid_header));
}

TEST(http_parser, reads_a_higher_minor_version_as_1_1_and_refuses_other_majors) {
  // RFC 9110 2.5: a higher minor version is processed as the highest one implemented.
  parser p{parser::kind::request};
  std::vector<int> minors;
  struct versions final : parser_handler {
    std::vector<int>* minors;
    void on_head(const message_head& h) override { minors->push_back(h.version_minor); }
    void on_body(std::string_view) override {}
    void on_message_complete() override {}
  } v;
  v.minors = &minors;
  p.feed("GET / HTTP/1.2\r\n\r\nGET / HTTP/1.9\r\n\r\n", v);
  EXPECT_FALSE(p.error());
  EXPECT_EQ(minors, (std::vector<int>{1, 1}));
  EXPECT_EQ(request_error("GET / HTTP/2.0\r\n\r\n"), make_error_code(errc::version_not_supported));
  EXPECT_EQ(status_of(errc::version_not_supported), 505);
  EXPECT_EQ(request_error("GET / HTTP/0.9\r\n\r\n"), make_error_code(errc::bad_request_line));
}

TEST(http_parser, refuses_an_http09_request_line_at_its_end) {
  // "GET /" and CRLF: http-parser would wait for header lines until the header timeout.
  EXPECT_EQ(request_error("GET /\r\n"), make_error_code(errc::bad_request_line));
  EXPECT_EQ(request_error("GET /\r"), make_error_code(errc::bad_request_line));
  parser p{parser::kind::request};
  recorder r;
  EXPECT_EQ(parse(p, r, "GET /\r\n", 1), make_error_code(errc::bad_request_line));
}

TEST(http_parser, a_transfer_coding_besides_chunked_is_not_implemented) {
  EXPECT_EQ(request_error("POST / HTTP/1.1\r\nTransfer-Encoding: deflate\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n"),
            make_error_code(errc::unsupported_transfer_coding));
  EXPECT_EQ(status_of(errc::unsupported_transfer_coding), 501);
  // A response's codings are passed on: the parser takes them.
  parser p{parser::kind::response};
  recorder r;
  EXPECT_FALSE(parse(p, r,
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                     "1\r\nx\r\n0\r\n\r\n"));
  EXPECT_EQ(r.messages.at(0).body, "x");
}

TEST(http_parser, an_upgrade_it_does_not_tunnel_is_an_ordinary_request) {
  const std::string two = "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                          "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
                          "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
  parser ignoring{parser::kind::request};
  ignoring.tunnel_upgrades(false);
  recorder r;
  EXPECT_FALSE(parse(ignoring, r, two));
  EXPECT_FALSE(ignoring.upgraded());
  ASSERT_EQ(r.messages.size(), 2U);
  EXPECT_EQ(r.messages[1].target, "/next");
  // By default the bytes after an Upgrade request are the tunnel's.
  parser tunneling{parser::kind::request};
  recorder t;
  EXPECT_FALSE(parse(tunneling, t, two));
  EXPECT_TRUE(tunneling.upgraded());
  EXPECT_EQ(t.messages.size(), 1U);
  // CONNECT is a tunnel either way.
  parser connect{parser::kind::request};
  connect.tunnel_upgrades(false);
  recorder c;
  EXPECT_FALSE(parse(connect, c, "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\nbytes"));
  EXPECT_TRUE(connect.upgraded());
}

TEST(http_parser, only_an_upgrade_to_the_protocol_named_tunnels_and_never_in_http_1_0) {
  const auto upgraded = [](const std::string& head) {
    parser p{parser::kind::request};
    p.tunnel_only("websocket");
    recorder r;
    EXPECT_FALSE(parse(p, r, head + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"));
    return p.upgraded();
  };
  EXPECT_TRUE(upgraded("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                       "Upgrade: WebSocket\r\n\r\n"));
  EXPECT_TRUE(upgraded("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                       "Upgrade: h2c, websocket/13\r\n\r\n"))
      << "any protocol of the list, its version aside";
  EXPECT_FALSE(upgraded("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                        "Upgrade: h2c\r\n\r\n"));
  EXPECT_FALSE(upgraded("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                        "Upgrade: websockets\r\n\r\n"));
  EXPECT_FALSE(upgraded("GET / HTTP/1.0\r\nHost: a\r\nConnection: Upgrade, keep-alive\r\n"
                        "Upgrade: websocket\r\n\r\n"))
      << "RFC 9110 7.8: an HTTP/1.0 request's Upgrade is ignored";
}

TEST(http_parser, the_end_of_a_chunked_body_cannot_hide_a_request) {
  // http-parser alone ends the message on CR + any byte, and would parse GET /admin next.
  EXPECT_EQ(request_error("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rX"
                          "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"),
            make_error_code(errc::invalid_chunk));
  EXPECT_EQ(request_error("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: v\n\r\n"),
            make_error_code(errc::invalid_chunk));
  EXPECT_EQ(request_error("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;" +
                          std::string(5000, 'e') + "\r\n"),
            make_error_code(errc::invalid_chunk))
      << "chunk extensions are bounded";
  parser p{parser::kind::request};
  recorder r;
  ASSERT_FALSE(
      parse(p, r, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: v\r\n\r\n"));
  EXPECT_TRUE(r.messages.at(0).complete);
}

TEST(http_parser, the_head_must_end_in_crlf_and_name_http) {
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: a\r\n\n"),
            make_error_code(errc::bare_line_ending));
  EXPECT_EQ(request_error("GET / HXYZ/1.1\r\n\r\n"), make_error_code(errc::bad_request_line));
  EXPECT_EQ(request_error("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\t\r\n\r\n"),
            make_error_code(errc::invalid_transfer_encoding))
      << "tether and http-parser must agree the body is chunked";
  parser p{parser::kind::response};
  recorder r;
  EXPECT_TRUE(parse(p, r, "XTTP/1.1 200 OK\r\n\r\n")) << "not a status line";
}

TEST(http_parser, a_head_response_stays_bodiless_after_an_interim_response) {
  parser p{parser::kind::response};
  recorder r;
  p.expect_head_response();
  ASSERT_FALSE(parse(p, r,
                     "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"));
  ASSERT_EQ(r.messages.size(), 2U);
  EXPECT_TRUE(r.messages[1].complete) << "the 200 answers HEAD: no body to wait for";
}

TEST(http_parser, limits_have_their_own_errors_and_statuses) {
  parser_limits small;
  small.max_request_line = 64;
  small.max_header_count = 3;
  small.max_header_bytes = 64;
  small.max_body = 4;
  const auto long_target = "GET /" + std::string(100, 'a') + " HTTP/1.1\r\n\r\n";
  EXPECT_EQ(request_error(long_target, small), make_error_code(errc::target_too_long));
  EXPECT_EQ(status_of(errc::target_too_long), 414);
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n", small),
            make_error_code(errc::too_many_headers));
  EXPECT_EQ(status_of(errc::too_many_headers), 431);
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nx: " + std::string(100, 'v') + "\r\n\r\n", small),
            make_error_code(errc::headers_too_large));
  EXPECT_EQ(request_error("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", small),
            make_error_code(errc::body_too_large));
  EXPECT_EQ(status_of(errc::body_too_large), 413);
  EXPECT_EQ(request_error("BREW / HTTP/1.1\r\n\r\n"),
            make_error_code(errc::method_not_implemented));
  EXPECT_EQ(status_of(errc::method_not_implemented), 501);
  EXPECT_EQ(status_of(errc::invalid_chunk), 400);
  EXPECT_EQ(make_error_code(errc::content_length_with_transfer_encoding).message(),
            "Content-Length together with Transfer-Encoding");
}

TEST(http_parser, responses_read_until_close_and_head_responses_have_no_body) {
  parser p{parser::kind::response};
  recorder r;
  ASSERT_FALSE(parse(p, r, "HTTP/1.1 200 OK\r\nServer: x\r\n\r\nsome bytes"));
  ASSERT_EQ(r.messages.size(), 1U);
  EXPECT_EQ(r.messages[0].framing, body_framing::until_close);
  EXPECT_FALSE(r.messages[0].complete);
  p.finish(r);
  EXPECT_FALSE(p.error());
  EXPECT_TRUE(r.messages[0].complete);
  EXPECT_EQ(r.messages[0].body, "some bytes");

  parser head{parser::kind::response};
  recorder hr;
  head.expect_head_response();
  ASSERT_FALSE(parse(
      head, hr, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"));
  ASSERT_EQ(hr.messages.size(), 2U);
  EXPECT_EQ(hr.messages[0].framing, body_framing::none);
  EXPECT_EQ(hr.messages[1].status, 204);
}

TEST(http_parser, a_response_cut_short_is_unexpected_eof) {
  parser p{parser::kind::response};
  recorder r;
  ASSERT_FALSE(parse(p, r, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"));
  p.finish(r);
  EXPECT_EQ(p.error(), make_error_code(errc::unexpected_eof));
}

TEST(http_parser, an_upgrade_hands_the_rest_to_the_tunnel) {
  parser p{parser::kind::request};
  recorder r;
  const std::string text = "GET /chat HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
                           "\x81\x05hello";
  const auto used = p.feed(text, r);
  EXPECT_FALSE(p.error());
  EXPECT_TRUE(p.upgraded());
  EXPECT_EQ(text.substr(used), "\x81\x05hello");
  EXPECT_EQ(p.feed("more", r), 0U);
}

} // namespace
} // namespace tether::http
