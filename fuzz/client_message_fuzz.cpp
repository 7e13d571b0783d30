// Fuzzes what tether's HTTP client reads from strings it does not control: a URL given to
// request::to / url::parse, a redirect's Location resolved against a request's URL (uriparser
// and url::parse together), a Retry-After value, a compressed body (zlib behind decode_body),
// a proxy URL, NO_PROXY rules and a proxy's answer to CONNECT. The first byte picks the status of
// the redirect and the body's coding; the rest is split into a base URL and a Location at the first
// newline, and is also the body.
//
// Checked beyond "no crash, no sanitizer report": a URL that parses prints back (target_url) as
// a URL that parses to the same parts, and a redirect that is followed leads to a request the
// client would send (request::problem() is empty) with a target that starts with '/'.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tether/http/content_coding.hpp"
#include "tether/http/message.hpp"
#include "tether/http/proxy.hpp"

namespace {

using namespace tether::http;

void require(bool ok, const char* what, std::string_view input) {
  if (!ok) {
    std::fprintf(stderr, "client_message_fuzz: %s for %.*s\n", what, static_cast<int>(input.size()),
                 input.data());
    std::abort();
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  constexpr int statuses[] = {301, 302, 303, 307, 308};
  const int status = statuses[data[0] % 5];
  const std::string_view input{reinterpret_cast<const char*>(data + 1), size - 1};
  const auto newline = input.find('\n');
  const std::string_view base = input.substr(0, newline);
  const std::string_view location =
      newline == std::string_view::npos ? std::string_view{} : input.substr(newline + 1);

  std::string problem;
  const auto u = url::parse(base, &problem);
  require(u.has_value() || !problem.empty(), "a refusal without a reason", base);
  if (u) {
    request r;
    r.host = u->host;
    r.port = u->port;
    r.target = u->target;
    r.tls = u->tls;
    const auto again = url::parse(r.target_url());
    require(again && again->host == u->host && again->port == u->port &&
                again->target == u->target && again->tls == u->tls,
            "a URL that does not print back", base);
    if (r.problem().empty()) {
      r.method = (data[0] & 0x80) != 0 ? "POST" : "GET";
      r.body = "b";
      r.headers = {{"Authorization", "x"}, {"Content-Type", "y"}};
      std::string why;
      const auto next = redirected(r, status, location, &why);
      require(next.has_value() || !why.empty(), "a redirect refused without a reason", input);
      if (next) {
        require(next->problem().empty(), "a redirect the client would not send", input);
        require(!next->target.empty() && next->target.front() == '/',
                "a redirect's target without a leading '/'", input);
      }
    }
  }
  (void)parse_retry_after(input, std::chrono::system_clock::time_point{});
  std::string why_not;
  const auto proxy = proxy_endpoint::parse(base, &why_not);
  require(proxy.has_value() || !why_not.empty(), "a proxy refused without a reason", base);
  (void)bypasses_proxy(location, u ? std::string_view{u->host} : base, u ? u->port : 80);
  if (const auto status = connect_reply_status(input)) {
    require(*status >= 0 && *status <= 999, "a status out of range", input);
  }

  constexpr const char* codings[] = {"gzip", "deflate", "deflate, gzip", "identity"};
  std::string body{input};
  if (decode_body(body, codings[(data[0] >> 3) % 4], 1 << 20)) {
    require(body == input, "a body changed by a failed decode", input);
  } else {
    require(body.size() <= (1U << 20), "a decoded body past its limit", input);
  }
  return 0;
}
