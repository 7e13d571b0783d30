#include "tether/http/content_coding.hpp"

#include <algorithm>
#include <array>
#include <vector>

#include <zlib.h>

#include "tether/http/error.hpp"
#include "text.hpp"

namespace tether::http {

using detail::iequals;
using detail::trim_ows;

namespace {

enum class coding { identity, gzip, deflate, other };

coding coding_of(std::string_view token) noexcept {
  if (token.empty() || iequals(token, "identity")) {
    return coding::identity;
  }
  if (iequals(token, "gzip") || iequals(token, "x-gzip")) {
    return coding::gzip;
  }
  if (iequals(token, "deflate")) {
    return coding::deflate;
  }
  return coding::other;
}

// Calls `f` on each coding of a Content-Encoding list, in the order they were applied.
template <typename F>
void each_coding(std::string_view list, F f) {
  while (!list.empty()) {
    const auto comma = list.find(',');
    f(coding_of(trim_ows(list.substr(0, comma))));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
  }
}

enum class inflated { ok, too_large, corrupt };

// One coding undone with zlib's inflate; window_bits picks the wrapper: 16 + 15 gzip, 15 zlib,
// -15 none (raw deflate). zlib does the decoding; this is the loop that feeds it and bounds
// what it may produce.
inflated inflate_into(std::string_view in, std::string& out, int window_bits,
                      std::uint64_t max_size) {
  z_stream z{};
  if (inflateInit2(&z, window_bits) != Z_OK) {
    return inflated::corrupt;
  }
  out.clear();
  const bool gzip = window_bits > MAX_WBITS;
  std::size_t fed = 0; // of `in`, handed to zlib so far (avail_in is 32 bits wide)
  const auto feed = [&] {
    if (z.avail_in == 0 && fed < in.size()) {
      const auto n = std::min<std::size_t>(in.size() - fed, 1U << 30);
      // zlib's next_in is not const; it does not write through it.
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + fed));
      z.avail_in = static_cast<uInt>(n);
      fed += n;
    }
  };
  std::array<char, 16 * 1024> chunk{};
  auto result = inflated::ok;
  for (;;) {
    feed();
    z.next_out = reinterpret_cast<Bytef*>(chunk.data());
    z.avail_out = static_cast<uInt>(chunk.size());
    const int rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      result = inflated::corrupt; // Z_DATA_ERROR, or Z_BUF_ERROR: the input ended early
      break;
    }
    const auto produced = chunk.size() - z.avail_out;
    if (out.size() + produced > max_size) {
      result = inflated::too_large;
      break;
    }
    out.append(chunk.data(), produced);
    const bool input_left = z.avail_in != 0 || fed < in.size();
    if (rc == Z_STREAM_END) {
      if (!input_left) {
        break;
      }
      // gzip may hold several members one after another (RFC 1952 2.2); anything else after
      // the end of the stream is not the coding's.
      if (!gzip || inflateReset(&z) != Z_OK) {
        result = inflated::corrupt;
        break;
      }
      continue;
    }
    if (produced == 0 && !input_left) {
      result = inflated::corrupt; // no more input and no end of stream: truncated
      break;
    }
  }
  inflateEnd(&z);
  return result;
}

} // namespace

bool decodable(std::string_view content_encoding) noexcept {
  bool ok = true;
  each_coding(content_encoding, [&](coding c) { ok = ok && c != coding::other; });
  return ok;
}

std::error_code decode_body(std::string& body, std::string_view content_encoding,
                            std::uint64_t max_size) {
  if (!decodable(content_encoding)) {
    return make_error_code(errc::bad_content_coding);
  }
  std::vector<coding> applied;
  each_coding(content_encoding, [&](coding c) {
    if (c != coding::identity) {
      applied.push_back(c);
    }
  });
  if (applied.empty()) {
    return {};
  }
  // Each layer may inflate up to max_size: more than a few is a way to spend the client's CPU,
  // not a way to send a body (curl stops at 5 too).
  if (applied.size() > max_codings) {
    return make_error_code(errc::bad_content_coding);
  }
  std::string_view source = body;
  std::string decoded;
  std::string done;
  for (auto it = applied.rbegin(); it != applied.rend(); ++it) {
    inflated r = inflated::corrupt;
    if (*it == coding::gzip) {
      r = inflate_into(source, decoded, 16 + MAX_WBITS, max_size);
    } else {
      // deflate is the zlib format (RFC 9110 8.4.1.2); some servers send raw deflate instead.
      r = inflate_into(source, decoded, MAX_WBITS, max_size);
      if (r == inflated::corrupt) {
        r = inflate_into(source, decoded, -MAX_WBITS, max_size);
      }
    }
    if (r == inflated::too_large) {
      return make_error_code(errc::body_too_large);
    }
    if (r == inflated::corrupt) {
      return make_error_code(errc::bad_content_coding);
    }
    done.swap(decoded);
    source = done;
  }
  body.swap(done);
  return {};
}

} // namespace tether::http
