// The messages of a take-over (`tether proxy --take-over`, upgrade.cpp): the new process and the
// running one talk over a Unix socket (SOCK_SEQPACKET), one short text per message, a listening
// socket passed with some (SCM_RIGHTS, net/fd_passing). Written and read here, apart from the
// sockets, so that the reading can be fuzzed (fuzz/take_over_fuzz.cpp) without Asio. Until
// "ready" the old process accepts as before.
//
//   new -> old   tether take-over 1 <pid>                 hello, this protocol's version
//   old -> new   socket <kind> <port> <address> <name>    one listening socket with it
//   old -> new   end <pid>                                no more sockets
//   old -> new   refused <why>                            instead of the sockets
//   new -> old   ready <pid>                              it accepts on them now
//   old -> new   draining                                 the old one accepts no more
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tether::proxy::take_over {

/// What a message says.
enum class says : std::uint8_t { hello, socket, end, refused, ready, draining, unknown };

/// A message read: views into the text it was read from.
struct message {
  says what = says::unknown;
  int pid = 0;             ///< hello (always above 0), end and ready (0 when not given)
  std::string_view kind;   ///< socket: "listener" or "admin"
  std::string_view name;   ///< socket: the listener's name (the rest of the line)
  std::string_view reason; ///< refused: why
};

/// Reads one message. Anything this version does not know (another version's hello, a socket
/// of an unknown kind, bytes that are no message) is `says::unknown`; nothing throws.
[[nodiscard]] message read(std::string_view text) noexcept;

[[nodiscard]] std::string hello(int pid);
/// Where it listens is asked of the socket itself; the port and address are for the log.
[[nodiscard]] std::string socket(std::string_view kind, std::uint16_t port,
                                 std::string_view address, std::string_view name);
[[nodiscard]] std::string end(int pid);
[[nodiscard]] std::string refused(std::string_view why);
[[nodiscard]] std::string ready(int pid);
inline constexpr std::string_view draining = "draining";

} // namespace tether::proxy::take_over
