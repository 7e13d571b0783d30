#pragma once
// Content codings the HTTP client decodes (RFC 9110 8.4.1): gzip and deflate, on zlib.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace tether::http {

/// The most codings one body may be in (gzip of gzip of ...); more is errc::bad_content_coding.
inline constexpr std::size_t max_codings = 5;

/// What the client sends as Accept-Encoding when it decodes responses itself.
inline constexpr std::string_view accepted_codings = "gzip, deflate";

/// True when every coding in a Content-Encoding value is one decode_body takes: gzip (x-gzip),
/// deflate, identity. A response in another coding (br, zstd) is handed over as it came.
[[nodiscard]] bool decodable(std::string_view content_encoding) noexcept;

/// Decodes `body` in place, undoing the codings of `content_encoding` from the last applied to
/// the first. deflate is taken with its zlib wrapper (RFC 9110) and, as browsers do, without.
/// Fails with errc::body_too_large when the decoded body would pass `max_size` (a small body
/// that inflates without bound), errc::bad_content_coding when the data is not what its coding
/// says (corrupt, truncated, bytes after its end); `body` is then unchanged.
[[nodiscard]] std::error_code decode_body(std::string& body, std::string_view content_encoding,
                                          std::uint64_t max_size);

} // namespace tether::http
