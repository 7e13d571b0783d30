// Fuzzes the reading of take-over messages (src/proxy/take_over_protocol.hpp): what another
// process sends over the upgrade socket. Any input is a message or `unknown`, never a crash; what
// was read points into the input, and each message read is what writing it back reads as.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "proxy/take_over_protocol.hpp"

namespace {

namespace to = tether::proxy::take_over;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "take_over_fuzz: %s\n", what);
    std::abort();
  }
}

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 8 * 1024) {
    return 0; // net::max_message_text is 4 KiB
  }
  const std::string_view text{reinterpret_cast<const char*>(data), size};
  const auto m = to::read(text);
  check(inside(m.kind, text) && inside(m.name, text) && inside(m.reason, text),
        "a view outside the message");
  check(m.pid >= 0, "a negative pid");
  switch (m.what) {
  case to::says::hello: {
    check(m.pid > 0, "a hello without a pid");
    check(to::read(to::hello(m.pid)).pid == m.pid, "a hello that does not read back");
    break;
  }
  case to::says::socket: {
    check(m.kind == "listener" || m.kind == "admin", "a socket of an unknown kind");
    const auto again = to::socket(m.kind, 8080, "127.0.0.1", m.name);
    const auto back = to::read(again);
    check(back.what == to::says::socket && back.kind == m.kind && back.name == m.name,
          "a socket message that does not read back");
    break;
  }
  case to::says::refused: {
    const auto again = to::refused(m.reason);
    check(to::read(again).reason == m.reason, "a refusal that does not read back");
    break;
  }
  case to::says::end:
  case to::says::ready: {
    if (m.pid > 0) {
      const auto again = m.what == to::says::end ? to::end(m.pid) : to::ready(m.pid);
      const auto back = to::read(again);
      check(back.what == m.what && back.pid == m.pid, "an end or ready that does not read back");
    }
    break;
  }
  case to::says::draining:
    check(text == to::draining, "draining read from something else");
    break;
  case to::says::unknown:
    check(m.kind.empty() && m.name.empty() && m.reason.empty() && m.pid == 0,
          "an unknown message with parts");
    break;
  }
  return 0;
}
