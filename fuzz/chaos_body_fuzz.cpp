// Fuzzes the readers of tether chaos's API bodies (the admin API's JSON): proxy bodies (create,
// update, /populate entries) and toxic bodies (create, update). Any input must end in a result
// or a 400 with a message, never a crash; what is accepted must be sound (names present,
// addresses host:port, toxicity in [0, 1], no negative attribute) and a toxic must read back the
// same from the JSON tether shows for it.
//
// Input: byte 0 picks the reader, the rest is the body.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "tether/chaos/model.hpp"

namespace {

using namespace tether::chaos;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "chaos_body_fuzz: %s\n", what);
    std::abort();
  }
}

void check_error(const std::optional<api_error>& e) {
  if (e) {
    check(e->status == 400 && !e->message.empty(), "an error that is not a 400 with a message");
  }
}

void check_proxy(const proxy_config& c) {
  std::string host;
  std::uint16_t port = 0;
  check(!c.name.empty() && !c.upstream.empty(), "a proxy without name or upstream");
  check(split_host_port(c.listen, host, port), "a listen address that is not host:port");
  check(split_host_port(c.upstream, host, port), "an upstream that is not host:port");
}

// A proxy body read as POST /proxies and each /populate entry read it.
void check_new_proxy_body(const api_json& body) {
  proxy_config c;
  auto e = read_proxy(body, c);
  if (!e) {
    e = check_new_proxy(c);
  }
  check_error(e);
  if (!e) {
    check_proxy(c);
  }
}

void check_toxic(const toxic& t) {
  check(!t.name.empty(), "a toxic without a name");
  check(t.toxicity >= 0.0 && t.toxicity <= 1.0, "toxicity outside [0, 1]");
  for (const auto v : {t.latency, t.jitter, t.rate, t.delay, t.timeout, t.average_size,
                       t.size_variation, t.bytes}) {
    check(v >= 0, "a negative attribute");
  }
  // What tether shows for the toxic reads back as the same toxic.
  toxic again;
  check(!read_new_toxic(to_json(t), again), "a toxic's own JSON refused");
  check(again.name == t.name && again.kind == t.kind && again.direction == t.direction &&
            again.toxicity == t.toxicity && again.latency == t.latency &&
            again.jitter == t.jitter && again.rate == t.rate && again.delay == t.delay &&
            again.timeout == t.timeout && again.average_size == t.average_size &&
            again.size_variation == t.size_variation && again.bytes == t.bytes,
        "a toxic's JSON reads back different");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::string_view text{reinterpret_cast<const char*>(data) + 1, size - 1};
  const auto body = parse_body(text);
  if (!body) {
    return 0; // the API answers "bad request body" before any reader runs
  }
  switch (data[0] % 4) {
  case 0: // POST /proxies
    check_new_proxy_body(*body);
    break;
  case 1: // POST /populate: each entry as a new proxy
    if (body->is_array()) {
      for (const auto& item : *body) {
        check_new_proxy_body(item);
      }
    }
    break;
  case 2: { // POST /proxies/{p}/toxics
    toxic t;
    const auto e = read_new_toxic(*body, t);
    check_error(e);
    if (!e) {
      check_toxic(t);
    }
    break;
  }
  case 3: { // POST /proxies/{p}/toxics/{t}: onto an existing toxic
    toxic t;
    t.name = "latency_downstream";
    t.latency = 5;
    if (!body->is_object()) {
      break;
    }
    auto e = read_toxicity(*body, t);
    if (!e) {
      e = read_attributes(*body, t);
    }
    check_error(e);
    if (!e) {
      check_toxic(t);
    }
    break;
  }
  }
  return 0;
}
