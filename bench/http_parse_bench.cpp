// Parse throughput of tether's HTTP/1.1 parser on typical messages: a browser's GET (long
// headers), an API POST with a JSON body, a small response, and a chunked response. Figures are
// messages/s (items) and bytes/s.
//
//   cmake --build --preset release --target tether_http_bench
//   ./build/release/bench/tether_http_bench
#include <benchmark/benchmark.h>

#include <string>

#include "tether/http/parser.hpp"

namespace {

using namespace tether::http;

const std::string browser_get =
    "GET /catalog/item/9781449373320?ref=home HTTP/1.1\r\n"
    "Host: shop.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36\r\n"
    "Accept: "
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    "Accept-Language: en-GB,en;q=0.9\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://shop.example.com/\r\n"
    "Cookie: session=8f3c2a9b7d6e5f4a3b2c1d0e; theme=dark; cart=3\r\n"
    "Sec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Site: same-origin\r\n"
    "Upgrade-Insecure-Requests: 1\r\nConnection: keep-alive\r\n\r\n";

const std::string api_body = "{\"customer\":\"c-1842\",\"items\":[{\"sku\":\"A-17\",\"qty\":2},"
                             "{\"sku\":\"B-03\",\"qty\":1}],\"rush\":false}";

const std::string api_post = "POST /v1/orders HTTP/1.1\r\n"
                             "Host: api.internal\r\n"
                             "Content-Type: application/json\r\n"
                             "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig\r\n"
                             "Idempotency-Key: 6f1e1a52-4b7f-4cc0-9a4e-2b8f0f6f7c11\r\n"
                             "Content-Length: " +
                             std::to_string(api_body.size()) + "\r\n\r\n" + api_body;

const std::string small_response = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                   "Content-Length: 27\r\nCache-Control: no-store\r\n\r\n"
                                   "{\"status\":\"ok\",\"id\":184210}";

const std::string chunked_response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                     "Transfer-Encoding: chunked\r\n\r\n"
                                     "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n"
                                     "10\r\n0123456789abcdef\r\n0\r\n\r\n";

struct sink final : parser_handler {
  std::size_t headers = 0;
  std::size_t body = 0;
  std::size_t messages = 0;
  void on_head(const message_head& h) override { headers += h.headers.size(); }
  void on_body(std::string_view piece) override { body += piece.size(); }
  void on_message_complete() override { ++messages; }
};

// One keep-alive connection's parser reading the same message again and again.
void parse(benchmark::State& state, const std::string& message, parser::kind kind) {
  parser p{kind};
  sink s;
  for (auto _ : state) {
    p.feed(message, s);
    if (p.error()) {
      state.SkipWithError("parse error");
      break;
    }
  }
  benchmark::DoNotOptimize(s.headers);
  state.SetItemsProcessed(static_cast<std::int64_t>(s.messages));
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(message.size()));
}

void browser_request(benchmark::State& state) {
  parse(state, browser_get, parser::kind::request);
}
void api_request(benchmark::State& state) {
  parse(state, api_post, parser::kind::request);
}
void api_response(benchmark::State& state) {
  parse(state, small_response, parser::kind::response);
}
void chunked(benchmark::State& state) {
  parse(state, chunked_response, parser::kind::response);
}

BENCHMARK(browser_request);
BENCHMARK(api_request);
BENCHMARK(api_response);
BENCHMARK(chunked);

} // namespace

BENCHMARK_MAIN();
