// RFC 9112 and RFC 9110 as tether proxy applies them to what it reads and forwards: each MUST a
// proxy can check, with its section, against raw requests, curl, and tether's test server
// behind (docs/proxy.md lists them). Under ASan+UBSan and TSan as well.
#include "tether/proxy/server.hpp"

#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "http_test_server.hpp"
#include "proxy_fixture.hpp"

namespace tether::proxy {
namespace {

using testing::http_test_server;
using testing::proxy_fixture;
using testing::run;

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

// The head of the response that begins `text` (up to its blank line).
std::string head_of(const std::string& text) {
  return text.substr(0, text.find("\r\n\r\n") + 2);
}

// RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
// request message that lacks a Host header field and to any request message that contains
// more than one Host header field line or a Host header field with an invalid field value."
TEST(proxy_rfc9112, host_rules_3_2) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  const std::string bad_hosts[] = {
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", // two Host fields
      "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", // two, even equal, even in 1.0
      "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",        // HTTP/1.1 without Host
      "GET / HTTP/1.1\r\nHost: \r\n\r\n",             // empty
      "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",          // not host[:port]
      "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",       // userinfo
      "GET / HTTP/1.1\r\nHost: a:http\r\n\r\n",       // bad port
      "GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n",      // port out of range
      "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",          // space
  };
  for (const auto& request : bad_hosts) {
    const auto out = proxy.raw(request);
    EXPECT_TRUE(starts_with(out, "HTTP/1.1 400 Bad Request\r\n")) << request << "\n" << out;
    EXPECT_NE(out.find("Host"), std::string::npos) << out; // the reason names the field
  }
  EXPECT_EQ(backend.requests(), 0);
}

// RFC 9112 3.2: HTTP/1.0 may omit Host, but an HTTP/1.1 request (what goes upstream) must have
// one: the upstream's host and port are used, as nginx's proxy_pass does.
TEST(proxy_rfc9112, an_http10_request_without_host_goes_upstream_with_one) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  const auto out = proxy.raw("GET /headers HTTP/1.0\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 200 OK\r\n")) << out;
  EXPECT_NE(out.find("Host: 127.0.0.1:" + std::to_string(backend.port()) + "\n"), std::string::npos)
      << out;
}

// RFC 9112 3.2.2: "a server MUST accept the absolute-form in requests"; "A proxy that forwards
// such a request MUST generate a new Host field value based on the received request-target
// rather than forward the received Host field value." RFC 9112 3.2.1: toward an origin server
// the target goes in origin-form. tether routes on the target's authority, and refuses a Host
// naming another host (stricter than the RFC: see docs/proxy.md).
TEST(proxy_rfc9112, absolute_form_is_routed_on_its_authority_3_2_2) {
  http_test_server backend;
  const auto yaml = "workers: 1\n"
                    "listeners: [{name: main, address: 127.0.0.1, port: 0}]\n"
                    "admin: {address: 127.0.0.1, port: 0}\n"
                    "routes: [{host: api.example, path_prefix: /, cluster: backend}]\n"
                    "clusters: [{name: backend, endpoints: [\"127.0.0.1:" +
                    std::to_string(backend.port()) + "\"]}]\n";
  proxy_fixture proxy{yaml, nullptr};
  auto out = proxy.raw("GET http://api.example/headers HTTP/1.1\r\nHost: api.example\r\n"
                       "Connection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 200 OK\r\n")) << out;
  EXPECT_NE(out.find("Host: api.example\n"), std::string::npos) << out;
  EXPECT_EQ(backend.requests_to("/headers"), 1); // origin-form upstream

  // Case and the default port do not make another authority; no path is "/".
  out = proxy.raw("GET HTTP://API.Example:80 HTTP/1.1\r\nHost: api.example\r\n"
                  "Connection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 200 OK\r\n")) << out;
  EXPECT_EQ(backend.requests_to("/"), 1);

  // Routed on the authority, not on the Host: a Host naming another host is refused.
  out = proxy.raw("GET http://api.example/ HTTP/1.1\r\nHost: admin.internal\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 400 Bad Request\r\n")) << out;
  // Origin-form with a host no route has: 404.
  out = proxy.raw("GET / HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 404 Not Found\r\n")) << out;
  // userinfo in the target (RFC 9110 4.2.4), another scheme, a target that is no form at all.
  for (const std::string target : {"http://user@api.example/", "ftp://api.example/", "relative"}) {
    out = proxy.raw("GET " + target + " HTTP/1.1\r\nHost: api.example\r\n\r\n");
    EXPECT_TRUE(starts_with(out, "HTTP/1.1 400 Bad Request\r\n")) << target << ": " << out;
  }
  EXPECT_EQ(backend.requests(), 2);
}

// RFC 9112 3.2.4: the asterisk-form is for OPTIONS only, and is forwarded as is.
TEST(proxy_rfc9112, options_asterisk_is_forwarded_3_2_4) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  auto out = proxy.raw("OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 200 OK\r\n")) << out;
  EXPECT_EQ(backend.requests_to("*"), 1);
  out = proxy.raw("GET * HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 400 Bad Request\r\n")) << out;
  EXPECT_EQ(backend.requests(), 1);
}

// RFC 9112 3: the request line. A request-target holds no whitespace or control byte (3.2);
// HTTP/0.9's line without a version is refused at once, not after the header timeout; a higher
// HTTP/1 minor version is read as 1.1 (RFC 9110 2.5); HTTP/2 on this connection is 505.
TEST(proxy_rfc9112, request_line_3) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  for (const std::string bad : {"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n",
                                "GET /a\fb HTTP/1.1\r\nHost: a\r\n\r\n", "GET /\r\n"}) {
    const auto out = proxy.raw(bad);
    EXPECT_TRUE(starts_with(out, "HTTP/1.1 400 Bad Request\r\n")) << out;
  }
  auto out = proxy.raw("GET /v HTTP/1.2\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 200 OK\r\n")) << out;
  EXPECT_EQ(backend.requests_to("/v"), 1);
  out = proxy.raw("GET / HTTP/2.0\r\nHost: a\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 505 HTTP Version Not Supported\r\n")) << out;
  EXPECT_EQ(backend.requests(), 1);
}

// RFC 9112 6.1: "A server that receives a request message with a transfer coding it does not
// understand SHOULD respond with 501 (Not Implemented)."
TEST(proxy_rfc9112, a_transfer_coding_besides_chunked_is_501_6_1) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  const auto out = proxy.raw("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n"
                             "\r\n1\r\nx\r\n0\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 501 Not Implemented\r\n")) << out;
  // "If a Transfer-Encoding header field is present in a request and the chunked transfer
  // coding is not the final encoding, ... the server MUST respond with the 400 (Bad Request)
  // status code and then close the connection."
  bool closed = false;
  const auto last = proxy.raw("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n"
                              "\r\n1\r\nx\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
                              &closed);
  EXPECT_TRUE(starts_with(last, "HTTP/1.1 400 Bad Request\r\n")) << last;
  EXPECT_TRUE(closed);
  EXPECT_EQ(backend.requests(), 0);
}

// RFC 9112 6.1: "A server or client that receives an HTTP/1.0 message containing a
// Transfer-Encoding header field MUST treat the message as if the framing is faulty, even if a
// Content-Length is present, and close the connection after processing the message."
TEST(proxy_rfc9112, an_http10_message_with_transfer_encoding_closes_its_connection_6_1) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/http10-chunked") + " " +
                proxy.url("/http10-chunked")),
            "okok");
  EXPECT_EQ(backend.connections(), 2); // despite its Connection: keep-alive
  const auto request = proxy.raw("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 "1\r\nx\r\n0\r\n\r\n");
  EXPECT_TRUE(starts_with(request, "HTTP/1.1 400 Bad Request\r\n")) << request;
  EXPECT_EQ(backend.requests(), 2);
}

// RFC 9112 5.1: "A proxy MUST remove any such whitespace [between a field name and its colon]
// from a response message before forwarding"; 5.2: a proxy receiving obs-fold in a response
// "MUST either discard the message and replace it with a 502 (Bad Gateway) response ... or
// replace each received obs-fold with one or more SP"; RFC 9110 5.5: "a recipient of CR, LF,
// or NUL within a field value MUST either reject the message or replace each of those
// characters with SP". tether rejects all three with 502 (stricter than 5.1, which lets a proxy
// repair the message: a response that breaks the grammar is not guessed at, as HAProxy does).
TEST(proxy_rfc9112, a_response_field_that_breaks_the_grammar_is_a_502_5) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  for (const std::string path : {"/space-before-colon", "/folded", "/nul", "/garbage"}) {
    const auto out = proxy.raw("GET " + path + " HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_TRUE(starts_with(out, "HTTP/1.1 502 Bad Gateway\r\n")) << path << ": " << out;
    EXPECT_NE(out.find("malformed response"), std::string::npos) << out;
  }
}

// RFC 9112 6.3: "If the sender closes the connection or the recipient times out before the
// indicated number of octets are received, the recipient MUST consider the message to be
// incomplete and close the connection." The client, which has the head already, learns it
// by the close.
TEST(proxy_rfc9112, a_response_cut_short_closes_the_client_connection_6_3) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  bool closed = false;
  const auto out = proxy.raw("GET /truncated HTTP/1.1\r\nHost: a\r\n\r\n", &closed);
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 200 OK\r\n")) << out;
  EXPECT_TRUE(out.ends_with("\r\n\r\nhalf")) << out;
  EXPECT_TRUE(closed);
}

// RFC 9112 9.6: "A server that receives a "close" connection option MUST initiate closure of
// the connection after it sends the final response to the request that contained the "close"
// connection option. ... The server MUST NOT process any further requests received on that
// connection." And a response with "close" ends that upstream connection (a client "MUST
// cease sending requests on that connection").
TEST(proxy_rfc9112, connection_close_ends_the_connection_9_6) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  bool closed = false;
  const auto out = proxy.raw("GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                             "GET /b HTTP/1.1\r\nHost: a\r\n\r\n",
                             &closed);
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 200 OK\r\n")) << out;
  EXPECT_NE(head_of(out).find("Connection: close\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("HTTP/1.1", 1), std::string::npos) << "one response only: " << out;
  EXPECT_TRUE(closed);
  EXPECT_EQ(backend.requests_to("/b"), 0);

  EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/close") + " " + proxy.url("/c")), "okok");
  EXPECT_EQ(backend.connections(), 2); // the upstream's close was honoured
}

// RFC 9110 7.6.1: "Intermediaries MUST parse a received Connection header field before a
// message is forwarded and, for each connection-option in this field, remove any header or
// trailer field(s) from the message with the same name as the connection-option, and then
// remove the Connection header field itself". 7.6.3: "A proxy MUST send an appropriate Via
// header field ... in each message that it forwards". 6.2: "Intermediaries ... MUST send their
// own HTTP-version in forwarded messages".
TEST(proxy_rfc9110, a_response_loses_its_hop_by_hop_fields_and_gains_via_7_6) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  auto out = proxy.raw("GET /hop-by-hop HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  const auto head = head_of(out);
  EXPECT_TRUE(starts_with(head, "HTTP/1.1 200 OK\r\n")) << head;
  EXPECT_EQ(head.find("X-Internal"), std::string::npos) << head;
  EXPECT_EQ(head.find("Keep-Alive"), std::string::npos) << head;
  EXPECT_NE(head.find("Via: 1.1 tether\r\n"), std::string::npos) << head;
  // An HTTP/1.0 upstream's answer goes out in tether's own version.
  out = proxy.raw("GET /http10 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 200 OK\r\n")) << out;
  // Interim responses too.
  out = proxy.raw("GET /early-hints HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_NE(head_of(out).find("Via: 1.1 tether\r\n"), std::string::npos) << out;
}

// RFC 9110 7.6.2: "Each intermediary that receives a TRACE or OPTIONS request containing a
// Max-Forwards header field MUST check and update its value prior to forwarding the request.
// If the received value is zero (0), the intermediary MUST NOT forward the request; instead,
// the intermediary MUST respond as the final recipient."
TEST(proxy_rfc9110, max_forwards_7_6_2) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  auto out = proxy.raw("OPTIONS * HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\n"
                       "Connection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 200 OK\r\n")) << out;
  EXPECT_NE(head_of(out).find("Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n"),
            std::string::npos)
      << out;
  out = proxy.raw("TRACE / HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 405 Method Not Allowed\r\n")) << out;
  EXPECT_EQ(backend.requests(), 0);
  out = proxy.raw("OPTIONS /headers HTTP/1.1\r\nHost: a\r\nMax-Forwards: 5\r\n"
                  "Connection: close\r\n\r\n");
  EXPECT_NE(out.find("Max-Forwards: 4\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("Max-Forwards: 5"), std::string::npos) << out;
  out = proxy.raw("GET /headers HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\n"
                  "Connection: close\r\n\r\n");
  EXPECT_NE(out.find("Max-Forwards: 0\n"), std::string::npos) << "only OPTIONS and TRACE: " << out;
  out = proxy.raw("OPTIONS / HTTP/1.1\r\nHost: a\r\nMax-Forwards: many\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 400 Bad Request\r\n")) << out;
}

// RFC 9110 7.3: "An intermediary MUST NOT forward a message to itself unless it is protected
// from an infinite request loop." A cluster whose endpoint is the proxy's own listener.
TEST(proxy_rfc9110, a_request_loop_ends_with_508_7_3) {
  const std::uint16_t port = [] {
    asio::io_context io;
    asio::ip::tcp::acceptor a{io, {asio::ip::make_address("127.0.0.1"), 0}};
    return a.local_endpoint().port();
  }();
  const auto yaml = "workers: 1\n"
                    "listeners: [{name: main, address: 127.0.0.1, port: " +
                    std::to_string(port) +
                    "}]\n"
                    "admin: {address: 127.0.0.1, port: 0}\n"
                    "routes: [{path_prefix: /, cluster: self}]\n"
                    "clusters: [{name: self, endpoints: [\"127.0.0.1:" +
                    std::to_string(port) + "\"]}]\n";
  proxy_fixture proxy{yaml, nullptr};
  const auto out = proxy.raw("GET /loop HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 508 Loop Detected\r\n")) << out;
  EXPECT_NE(out.find("request loop"), std::string::npos) << out;
}

// RFC 9110 6.6.1: "An origin server with a clock ... MUST generate a Date header field in all
// 2xx, 3xx, and 4xx responses": the answers the proxy and its admin listener give carry one.
TEST(proxy_rfc9110, the_proxys_own_answers_carry_a_date_6_6_1) {
  http_test_server backend;
  const auto yaml = proxy_fixture::yaml_for({backend.port()}, "", true);
  proxy_fixture proxy{yaml, nullptr};
  const auto out = proxy.raw("GET /elsewhere HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 404 Not Found\r\n")) << out;
  const std::regex date{
      R"(\r\nDate: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT\r\n)"};
  EXPECT_TRUE(std::regex_search(head_of(out), date)) << out;
  // The admin listener's answers too: one writer (http::write_own_response) for both.
  const auto admin = testing::raw_exchange(proxy.admin_port(), "GET /ready HTTP/1.1\r\nHost: a\r\n"
                                                               "Connection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(admin, "HTTP/1.1 200 OK\r\n")) << admin;
  EXPECT_TRUE(std::regex_search(head_of(admin), date)) << admin;
}

// RFC 9110 7.7: "A proxy MUST NOT modify the "absolute-path" and "query" parts of the received
// target URI when forwarding it to the next inbound server except as required by that
// forwarding protocol." 5.3: "A proxy MUST NOT change the order of these field line values
// when forwarding a message" (fields of one name).
TEST(proxy_rfc9110, the_target_and_the_order_of_fields_are_kept_7_7_and_5_3) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  const std::string target = "/a/../b/%2e%2E/c;p?x=%2F&y=1&y=2";
  auto out = proxy.raw("GET " + target + " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 200 OK\r\n")) << out;
  EXPECT_EQ(backend.requests_to(target), 1);
  out = proxy.raw("GET /headers HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-B: 2\r\nX-A: 3\r\n"
                  "Connection: close\r\n\r\n");
  EXPECT_NE(out.find("X-A: 1\nX-B: 2\nX-A: 3\n"), std::string::npos) << out;
}

// RFC 9110 4.1: "A server that receives a request-target longer than any URI it wishes to parse
// MUST respond with a 414 (URI Too Long)"; 5.4: "A server that receives a request header field
// line, field value, or set of fields larger than it wishes to process MUST respond with an
// appropriate 4xx (Client Error) status code" (431).
TEST(proxy_rfc9110, limits_are_answered_414_and_431_4_1_and_5_4) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  auto out = proxy.raw("GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 414 URI Too Long\r\n")) << out.substr(0, 100);
  std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 101; ++i) {
    many += "X-" + std::to_string(i) + ": v\r\n";
  }
  out = proxy.raw(many + "\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 431 Request Header Fields Too Large\r\n")) << out;
  out = proxy.raw("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(40000, 'b') + "\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 431 Request Header Fields Too Large\r\n")) << out;
  EXPECT_EQ(backend.requests(), 0);
}

// RFC 9110 10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0 request
// MUST ignore that expectation."
TEST(proxy_rfc9110, an_expectation_in_http10_is_ignored_10_1_1) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  const auto out = proxy.raw("POST /headers HTTP/1.0\r\nHost: a\r\nExpect: 100-continue\r\n"
                             "Content-Length: 2\r\n\r\nok");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 200 OK\r\n")) << out;
  EXPECT_EQ(out.find("100 Continue"), std::string::npos) << out;
  EXPECT_EQ(out.find("Expect"), std::string::npos) << out;
}

// RFC 9110 7.8: "A server MAY ignore a received Upgrade header field if it wishes to continue
// using the current protocol on that connection." Until tether tunnels, it does: curl --http2
// (h2c upgrade) and a WebSocket upgrade are answered over HTTP/1.1, and neither the Upgrade nor
// what Connection names goes upstream (7.6.1). CONNECT is 501.
TEST(proxy_rfc9110, an_upgrade_it_does_not_do_is_ignored_7_8) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  const auto out = run("curl -sS --max-time 5 --http2 -w ' %{http_code} %{http_version}' " +
                       proxy.url("/headers"));
  EXPECT_NE(out.find(" 200 1.1"), std::string::npos) << out;
  EXPECT_EQ(out.find("Upgrade"), std::string::npos) << out;
  EXPECT_EQ(out.find("HTTP2-Settings"), std::string::npos) << out;

  // An h2c Upgrade (tether does not speak HTTP/2 yet), and any Upgrade in HTTP/1.0, which
  // RFC 9110 7.8 says to ignore: the bytes after it are the next request. (A WebSocket Upgrade
  // is a tunnel: proxy_tunnel_test.cpp.)
  const auto h2c = proxy.raw("GET /headers HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, "
                             "HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__"
                             "\r\n\r\n"
                             "GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(h2c, "HTTP/1.1 200 OK\r\n")) << h2c;
  EXPECT_EQ(h2c.find("h2c"), std::string::npos) << h2c;
  EXPECT_EQ(backend.requests_to("/after"), 1) << "the bytes after it are the next request";
  const auto old = proxy.raw("GET /headers HTTP/1.0\r\nHost: a\r\nConnection: Upgrade, "
                             "keep-alive\r\nUpgrade: websocket\r\n\r\n"
                             "GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(old, "HTTP/1.1 200 OK\r\n")) << old;
  EXPECT_EQ(old.find("websocket"), std::string::npos) << old;
  EXPECT_EQ(backend.requests_to("/after"), 2);

  // CONNECT is a tunnel, only to what a route allows (proxy_tunnel_test.cpp): none here.
  const auto connect =
      proxy.raw("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  EXPECT_TRUE(starts_with(connect, "HTTP/1.1 403 Forbidden\r\n")) << connect;
  EXPECT_NE(connect.find("no route allows CONNECT to example.com:443"), std::string::npos)
      << connect;
}

// RFC 9110 15.2: "A proxy MUST forward 1xx responses unless the proxy itself requested the
// generation of the 1xx response", and "A server MUST NOT send a 1xx response to an HTTP/1.0
// client". A 101 the request did not ask for is the upstream out of step: 502 at once.
TEST(proxy_rfc9110, interim_responses_are_forwarded_15_2) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  auto out = proxy.raw("GET /early-hints HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n"))
      << out;
  EXPECT_NE(out.find("\r\n\r\nHTTP/1.1 200 OK\r\n"), std::string::npos) << out;
  EXPECT_TRUE(out.ends_with("\r\n\r\nok")) << out;

  out = proxy.raw("GET /early-hints HTTP/1.0\r\nHost: a\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 200 OK\r\n")) << out;
  EXPECT_EQ(out.find("103"), std::string::npos) << out;

  out = proxy.raw("GET /switch HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 502 Bad Gateway\r\n")) << out;
  EXPECT_NE(out.find("101"), std::string::npos) << out;
}

// RFC 9110 8.6: "A server MUST NOT send a Content-Length header field in any response with a
// status code of 1xx (Informational) or 204 (No Content)." RFC 9112 6.1: "A server MUST NOT
// send a Transfer-Encoding header field in any response with a status code of 1xx
// (Informational) or 204 (No Content)"; a 304 has no body, so no Transfer-Encoding either.
// A proxy forwarding one as received would pass the upstream's mistake on.
TEST(proxy_rfc9110, a_204_or_304_goes_without_framing_fields_8_6) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  const auto out = proxy.raw("GET /no-content HTTP/1.1\r\nHost: a\r\n\r\n"
                             "GET /no-content-length HTTP/1.1\r\nHost: a\r\n\r\n"
                             "GET /not-modified HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  std::vector<std::string> heads;
  for (auto at = out.find("HTTP/1.1 "); at != std::string::npos;
       at = out.find("HTTP/1.1 ", at + 1)) {
    heads.push_back(head_of(out.substr(at)));
  }
  ASSERT_EQ(heads.size(), 3U) << out;
  EXPECT_TRUE(starts_with(heads[0], "HTTP/1.1 204")) << heads[0];
  EXPECT_TRUE(starts_with(heads[1], "HTTP/1.1 204")) << heads[1];
  EXPECT_TRUE(starts_with(heads[2], "HTTP/1.1 304")) << heads[2];
  for (const auto& head : heads) {
    EXPECT_EQ(head.find("Transfer-Encoding"), std::string::npos) << head;
  }
  EXPECT_EQ(heads[0].find("Content-Length"), std::string::npos) << heads[0];
  EXPECT_EQ(heads[1].find("Content-Length"), std::string::npos) << heads[1];
  EXPECT_NE(heads[2].find("ETag: \"v1\""), std::string::npos) << heads[2];
}

// RFC 9110 15.5.6: "The origin server MUST generate an Allow header field in a 405 response
// containing a list of the target resource's currently supported methods."
TEST(proxy_rfc9110, the_admin_listener_405_says_allow_15_5_6) {
  http_test_server backend;
  proxy_fixture proxy{{backend.port()}};
  const auto out = testing::raw_exchange(
      proxy.admin_port(), "POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
                          "Connection: close\r\n\r\n");
  EXPECT_TRUE(starts_with(out, "HTTP/1.1 405 Method Not Allowed\r\n")) << out;
  EXPECT_NE(head_of(out).find("Allow: GET\r\n"), std::string::npos) << out;
}

} // namespace
} // namespace tether::proxy
