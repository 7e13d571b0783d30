#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include <asio/awaitable.hpp>

#include "tether/core/clock.hpp"
#include "tether/tls/context.hpp"
#include "tether/tls/stream.hpp"

namespace tether::tls {

/// Why a handshake failed, as a metric label says it. In the order of errc's tls_* codes.
enum class failure_cause : std::uint8_t {
  certificate_expired,
  unknown_ca,
  hostname_mismatch,
  certificate_invalid,
  certificate_refused, ///< the peer refused our certificate, or we lacked one it required
  protocol_version,
  timeout,
  other, ///< not TLS at all, no common cipher, the peer closed or reset mid-handshake
};
inline constexpr std::size_t failure_causes = 8;

/// "certificate_expired", "unknown_ca", ...
[[nodiscard]] const char* to_string(failure_cause cause) noexcept;
/// The cause of a handshake's error (a tether::errc from the handshakes here, or anything else).
[[nodiscard]] failure_cause cause_of(std::error_code ec) noexcept;

/// Handshakes of one side (a cluster's connections, a listener's), counted as they end; read at
/// scrape time. Shared by every thread that handshakes: relaxed atomics.
struct handshake_counters {
  std::atomic<std::uint64_t> full{0};    ///< completed with a full handshake
  std::atomic<std::uint64_t> resumed{0}; ///< completed by resuming an earlier session
  std::atomic<std::uint64_t> tls1_2{0};  ///< completed at TLS 1.2
  std::atomic<std::uint64_t> tls1_3{0};  ///< completed at TLS 1.3
  std::array<std::atomic<std::uint64_t>, failure_causes> failures{};

  /// Counts a handshake that completed on `s`: full or resumed, and its version.
  void completed(stream& s) noexcept;
  /// Counts a handshake that failed.
  void failed_by(failure_cause cause) noexcept {
    failures[static_cast<std::size_t>(cause)].fetch_add(1, std::memory_order_relaxed);
  }
};

class session_cache;

/// What TLS connections to one upstream are made with: the context (verification, client
/// certificate), the name sent as SNI and verified, and the last session to resume. A pool's
/// connections all share one identity, so a pooled connection is only ever reused for requests
/// with the same address, SNI, verification and client certificate (each host of each cluster
/// has its own pool).
class client_identity {
public:
  /// `host` is the upstream's host as configured (a name or an IP address); the context's
  /// server_name, when set, is sent and verified instead.
  /// `counters` is held (non-owning, by aliasing, when its owner outlives every connection).
  client_identity(std::shared_ptr<client_context> context, std::string_view host,
                  std::shared_ptr<handshake_counters> counters = nullptr);
  ~client_identity();
  client_identity(client_identity&&) noexcept;
  client_identity& operator=(client_identity&&) noexcept;

  /// A stream over `socket` ready for the handshake: a new SSL object with the SNI name, the
  /// name to verify, and the last session offered for resumption.
  [[nodiscard]] stream open(asio::ip::tcp::socket socket);

  /// The client handshake on a stream from open(), within the context's handshake timeout. On
  /// failure the error is a tether::errc naming the cause (tls_certificate_expired,
  /// tls_unknown_ca, tls_hostname_mismatch, tls_handshake_timeout, tls_protocol_version, ...) or
  /// the socket's own (a reset).
  asio::awaitable<std::error_code> async_handshake(stream& s);

  /// The name sent as SNI and verified.
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// The protocol ALPN settled on for `s` ("http/1.1"), empty when none.
  [[nodiscard]] static std::string_view alpn(stream& s) noexcept;

private:
  std::shared_ptr<client_context> context_;
  std::string name_;
  bool name_is_address_ = false;
  std::shared_ptr<handshake_counters> counters_;
  std::shared_ptr<session_cache> sessions_;
};

/// The server side of a handshake on an accepted connection, until it ends or `s` is cancelled
/// (the caller's timeout does it: for a listener, the request-header timeout). The error says
/// why it failed, as a client handshake's would; the caller counts the outcome (a cancelled
/// handshake is the caller's timeout).
asio::awaitable<std::error_code> async_accept(stream& s);

/// What an error of a read or write on `s` means: on a secured stream, a TLS alert becomes a
/// tether::errc as a handshake's would (a TLS 1.3 server refuses a client certificate after the
/// client's handshake has ended, on its first read); anything else is returned as it is.
[[nodiscard]] std::error_code classify_failure(stream& s, std::error_code ec) noexcept;

/// The subject of the peer's verified certificate (RFC 2253, "CN=client,O=Example"), empty when
/// it sent none.
[[nodiscard]] std::string peer_subject(stream& s);

/// "TLSv1.3" and such, for a secured stream.
[[nodiscard]] std::string_view protocol_version(stream& s) noexcept;

} // namespace tether::tls
