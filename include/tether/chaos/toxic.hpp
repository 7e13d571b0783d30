#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tether::chaos {

/// Which way a toxic acts: on bytes from the client to the upstream, or back.
enum class stream : std::uint8_t { upstream, downstream };

/// "upstream" or "downstream".
[[nodiscard]] std::string_view to_string(stream s) noexcept;
[[nodiscard]] std::optional<stream> stream_from(std::string_view s) noexcept;

/// The toxics of Toxiproxy, by their API names. One vocabulary with the tests (style.md, 8).
enum class toxic_kind : std::uint8_t {
  latency,    ///< each chunk held `latency` ms (+- up to `jitter` ms) after it arrived
  bandwidth,  ///< at most `rate` KB/s (1 KB = 1000 bytes)
  slow_close, ///< the close is passed on `delay` ms late
  timeout,    ///< bytes are dropped; the connection closes `timeout` ms after the last (0: never)
  reset_peer, ///< the connection is reset (TCP RST) `timeout` ms after the next bytes
  slicer, ///< chunks cut into pieces of `average_size` +- `size_variation` bytes, `delay` us apart
  limit_data, ///< the connection closes once `bytes` bytes have passed this way
};

[[nodiscard]] std::string_view to_string(toxic_kind k) noexcept;
[[nodiscard]] std::optional<toxic_kind> toxic_kind_from(std::string_view s) noexcept;

/// One toxic on a proxy. Attribute fields not used by its kind stay 0.
struct toxic {
  std::string name;
  toxic_kind kind = toxic_kind::latency;
  stream direction = stream::downstream;
  double toxicity = 1.0; ///< the chance, per connection, that the toxic acts on it

  std::int64_t latency = 0;        ///< latency: ms
  std::int64_t jitter = 0;         ///< latency: ms
  std::int64_t rate = 0;           ///< bandwidth: KB/s
  std::int64_t delay = 0;          ///< slow_close: ms; slicer: microseconds
  std::int64_t timeout = 0;        ///< timeout, reset_peer: ms
  std::int64_t average_size = 0;   ///< slicer: bytes
  std::int64_t size_variation = 0; ///< slicer: bytes
  std::int64_t bytes = 0;          ///< limit_data: bytes
};

} // namespace tether::chaos
