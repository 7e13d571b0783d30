#include "tether/http/parser.hpp"
#include "tether/http/fields.hpp"

#include "text.hpp"

#include <http_parser.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <utility>

namespace tether::http {
namespace {

using detail::iequals;
using detail::is_tchar;
using detail::trim_ows;

class http_category final : public std::error_category {
public:
  [[nodiscard]] const char* name() const noexcept override { return "tether.http"; }
  [[nodiscard]] std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
    case errc::bad_request_line:
      return "malformed request line";
    case errc::method_not_implemented:
      return "method not implemented";
    case errc::target_too_long:
      return "request line too long";
    case errc::too_many_headers:
      return "too many header fields";
    case errc::headers_too_large:
      return "header section too large";
    case errc::body_too_large:
      return "body too large";
    case errc::invalid_header:
      return "malformed header field (whitespace or control byte in name or value)";
    case errc::obsolete_line_folding:
      return "obsolete line folding in a header value";
    case errc::bare_line_ending:
      return "bare CR or LF where CRLF is required";
    case errc::content_length_with_transfer_encoding:
      return "Content-Length together with Transfer-Encoding";
    case errc::invalid_content_length:
      return "invalid or conflicting Content-Length";
    case errc::invalid_transfer_encoding:
      return "invalid Transfer-Encoding (chunked must be the last coding)";
    case errc::invalid_chunk:
      return "invalid chunk size or chunk framing";
    case errc::invalid_status_line:
      return "malformed status line";
    case errc::unexpected_eof:
      return "connection closed in the middle of a message";
    case errc::data_after_close:
      return "data after a message that closes the connection";
    case errc::malformed:
      return "malformed HTTP/1.1 message";
    case errc::invalid_target:
      return "invalid request-target (a control byte, a space, or a form its method does not take)";
    case errc::version_not_supported:
      return "HTTP version not supported on an HTTP/1.1 connection";
    case errc::unsupported_transfer_coding:
      return "transfer coding not supported (only chunked is)";
    case errc::missing_host:
      return "no Host field in an HTTP/1.1 request";
    case errc::duplicate_host:
      return "more than one Host field";
    case errc::invalid_host:
      return "invalid Host field (not host[:port])";
    case errc::host_mismatch:
      return "the Host field does not match the request-target's authority";
    case errc::bad_content_coding:
      return "the body is not what its Content-Encoding says (corrupt or truncated)";
    }
    return "unknown tether.http error " + std::to_string(value);
  }
};

// http-parser keeps its header limit in a process-wide variable; tether enforces its own, per
// parser, so that one is set out of the way once.
void raise_http_parser_limit() {
  static std::once_flag once;
  std::call_once(once, [] { http_parser_set_max_header_size(16U * 1024U * 1024U); });
}

errc from_http_errno(http_errno e, parser::kind k) noexcept {
  switch (e) {
  case HPE_INVALID_METHOD:
    return errc::method_not_implemented;
  case HPE_INVALID_URL:
    return errc::bad_request_line;
  case HPE_INVALID_VERSION:
  case HPE_INVALID_STATUS:
    return k == parser::kind::request ? errc::bad_request_line : errc::invalid_status_line;
  case HPE_INVALID_HEADER_TOKEN:
    return errc::invalid_header;
  case HPE_INVALID_CONTENT_LENGTH:
  case HPE_UNEXPECTED_CONTENT_LENGTH:
    return errc::invalid_content_length;
  case HPE_INVALID_CHUNK_SIZE:
    return errc::invalid_chunk;
  case HPE_INVALID_TRANSFER_ENCODING:
    return errc::invalid_transfer_encoding;
  case HPE_HEADER_OVERFLOW:
    return errc::headers_too_large;
  case HPE_LF_EXPECTED:
    return errc::bare_line_ending;
  case HPE_INVALID_EOF_STATE:
    return errc::unexpected_eof;
  default:
    return errc::malformed;
  }
}

} // namespace

const std::error_category& error_category() noexcept {
  static const http_category category;
  return category;
}

int status_of(errc e) noexcept {
  switch (e) {
  case errc::method_not_implemented:
    return 501;
  case errc::target_too_long:
    return 414;
  case errc::too_many_headers:
  case errc::headers_too_large:
    return 431;
  case errc::body_too_large:
    return 413;
  case errc::invalid_status_line:
    return 502;
  case errc::version_not_supported:
    return 505;
  case errc::unsupported_transfer_coding:
    return 501;
  default:
    return 400;
  }
}

const header* message_head::find(std::string_view name) const noexcept {
  return find_field(headers, name);
}

// A run of bytes the parser saw: a view into the current feed, or (once that feed is over, or
// when the run arrived in pieces) a range of the parser's own arena.
struct piece {
  const char* ptr = nullptr;
  std::uint32_t offset = 0;
  std::uint32_t len = 0;
  bool spilled = false;
};

namespace {

// The bytes the head scan stops at inside a field line: in its value, and in its name.
constexpr std::array<bool, 256> stop_table(std::string_view bytes) {
  std::array<bool, 256> t{};
  for (const char b : bytes) {
    t[static_cast<unsigned char>(b)] = true;
  }
  return t;
}
constexpr auto value_stops = stop_table("\r\n");
constexpr auto name_stops = stop_table("\r\n: \t");

} // namespace

struct parser::state {
  enum class pause_reason : std::uint8_t { none, head, message };

  http_parser p{};
  http_parser_settings settings{};
  parser::kind k = parser::kind::request;
  parser_limits limits;
  parser_handler* handler = nullptr;

  std::string arena;
  piece status_text;
  piece url;
  struct field {
    piece name;
    piece value;
  };
  std::vector<field> fields;
  bool in_value = false;
  std::uint64_t body_bytes = 0;
  std::vector<header> views;
  bool in_head = true; // before on_head of the current message
  bool in_message = false;
  bool skip_body = false;
  bool closing = false;  // the last message said the connection closes after it
  bool upgraded = false; // the bytes from here on are a tunnel
  bool tunnel_upgrades = true;
  std::string tunnel_protocol; // tunnel only an Upgrade listing it (empty: any)
  pause_reason paused = pause_reason::none;
  std::error_code local;

  // Head scanning state (see scan_head).
  struct head_scan {
    bool prev_cr = false;
    int line = 0;
    bool line_start = true;
    bool prev_space = false;
    int start_spaces = 0;
    int status_digits = 0;
    bool seen_colon = false;
    std::size_t start_line_bytes = 0;
    std::size_t header_section_bytes = 0;
    std::size_t version_chars = 0;
  };
  head_scan scan;

  // Chunk framing, checked byte by byte (http-parser lets a space after the size, and anything
  // in extensions, through). The data bytes are skipped: on_body accounts for them.
  enum class chunk_state : std::uint8_t {
    off,            // not in a chunked body, or past the last chunk (trailers: http-parser's)
    head_lf,        // the LF that ends the head
    size_first,     // first HEXDIG of a size
    size,           // more HEXDIG, ';' or CR
    ext_name_start, // after ';'
    ext_name,       // token, '=', ';' or CR
    ext_value_start,
    ext_token,
    ext_quoted,
    ext_quoted_pair,
    ext_after_quoted,
    size_lf,       // LF after the size line
    data,          // chunk data (on_body)
    data_cr,       // CR after the data
    data_lf,       // LF after the data
    trailer_start, // start of a trailer line, or CR of the final empty line
    trailer_line,  // inside a trailer line
    trailer_lf,    // LF after a trailer line
    final_lf,      // LF of the final empty line: the message ends after it
  };
  chunk_state chunk = chunk_state::off;
  std::uint64_t chunk_left = 0;
  std::uint64_t chunk_size = 0;
  std::size_t extension_bytes = 0; // in the current size line
  std::size_t trailer_bytes = 0;
  static constexpr std::size_t max_extension_bytes = 4096;
  const char* chunk_scan_from = nullptr;

  static bool is_hex(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  }
  static bool is_qdtext(unsigned char c) noexcept {
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5B) ||
           (c >= 0x5D && c <= 0x7E) || c >= 0x80;
  }

  // Scans framing bytes [begin, end); false on the first that breaks RFC 9112's chunk grammar.
  bool scan_chunks(const char* begin, const char* end) {
    for (const char* c = begin; c != end; ++c) {
      const auto ch = static_cast<unsigned char>(*c);
      switch (chunk) {
      case chunk_state::off:
        return true;
      case chunk_state::head_lf:
        if (ch != '\n') {
          return false;
        }
        chunk = chunk_state::size_first;
        chunk_size = 0;
        extension_bytes = 0;
        trailer_bytes = 0;
        break;
      case chunk_state::size_first:
      case chunk_state::size:
        if (is_hex(static_cast<char>(ch))) {
          chunk_size = chunk_size * 16 +
                       static_cast<std::uint64_t>(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
          chunk = chunk_state::size;
        } else if (chunk == chunk_state::size && ch == ';') {
          chunk = chunk_state::ext_name_start;
        } else if (chunk == chunk_state::size && ch == '\r') {
          chunk = chunk_state::size_lf;
        } else {
          return false;
        }
        break;
      case chunk_state::ext_name_start:
      case chunk_state::ext_name:
        if (is_tchar(static_cast<char>(ch))) {
          chunk = chunk_state::ext_name;
        } else if (chunk == chunk_state::ext_name && ch == '=') {
          chunk = chunk_state::ext_value_start;
        } else if (chunk == chunk_state::ext_name && ch == ';') {
          chunk = chunk_state::ext_name_start;
        } else if (chunk == chunk_state::ext_name && ch == '\r') {
          chunk = chunk_state::size_lf;
        } else {
          return false;
        }
        break;
      case chunk_state::ext_value_start:
        if (ch == '"') {
          chunk = chunk_state::ext_quoted;
        } else if (is_tchar(static_cast<char>(ch))) {
          chunk = chunk_state::ext_token;
        } else {
          return false;
        }
        break;
      case chunk_state::ext_token:
        if (ch == ';') {
          chunk = chunk_state::ext_name_start;
        } else if (ch == '\r') {
          chunk = chunk_state::size_lf;
        } else if (!is_tchar(static_cast<char>(ch))) {
          return false;
        }
        break;
      case chunk_state::ext_quoted:
        if (ch == '"') {
          chunk = chunk_state::ext_after_quoted;
        } else if (ch == '\\') {
          chunk = chunk_state::ext_quoted_pair;
        } else if (!is_qdtext(ch)) {
          return false;
        }
        break;
      case chunk_state::ext_quoted_pair:
        if (!(ch == '\t' || (ch >= 0x20 && ch != 0x7F))) {
          return false;
        }
        chunk = chunk_state::ext_quoted;
        break;
      case chunk_state::ext_after_quoted:
        if (ch == ';') {
          chunk = chunk_state::ext_name_start;
        } else if (ch == '\r') {
          chunk = chunk_state::size_lf;
        } else {
          return false;
        }
        break;
      case chunk_state::size_lf:
        if (ch != '\n') {
          return false;
        }
        if (chunk_size == 0) {
          chunk = chunk_state::trailer_start; // the last chunk: trailers follow
        } else {
          chunk = chunk_state::data;
          chunk_left = chunk_size;
        }
        break;
      case chunk_state::data:
        return false; // data bytes come through on_body, never here
      case chunk_state::data_cr:
        if (ch != '\r') {
          return false;
        }
        chunk = chunk_state::data_lf;
        break;
      case chunk_state::data_lf:
        if (ch != '\n') {
          return false;
        }
        chunk = chunk_state::size_first;
        chunk_size = 0;
        extension_bytes = 0;
        break;
      // The trailer section: lines ending in CRLF (no folding), then an empty line. http-parser
      // would end the message on a CR followed by any byte, which lets a request hide behind it.
      case chunk_state::trailer_start:
        if (ch == '\r') {
          chunk = chunk_state::final_lf;
        } else if (ch == '\n' || ch == ' ' || ch == '\t') {
          return false;
        } else {
          chunk = chunk_state::trailer_line;
        }
        break;
      case chunk_state::trailer_line:
        if (ch == '\r') {
          chunk = chunk_state::trailer_lf;
        } else if (ch == '\n') {
          return false;
        }
        break;
      case chunk_state::trailer_lf:
        if (ch != '\n') {
          return false;
        }
        chunk = chunk_state::trailer_start;
        break;
      case chunk_state::final_lf:
        if (ch != '\n') {
          return false;
        }
        chunk = chunk_state::off;
        break;
      }
      // Extensions and trailers carry no data but cost memory and time: bound them.
      if (chunk >= chunk_state::ext_name_start && chunk <= chunk_state::ext_after_quoted &&
          ++extension_bytes > max_extension_bytes) {
        return false;
      }
      if (chunk >= chunk_state::trailer_start && ++trailer_bytes > limits.max_header_bytes) {
        return false;
      }
    }
    return true;
  }

  // Whether an Upgrade field lists tunnel_protocol (any protocol when that is empty).
  [[nodiscard]] bool upgrade_listed() const noexcept {
    if (tunnel_protocol.empty()) {
      return true;
    }
    return std::any_of(fields.begin(), fields.end(), [this](const field& f) {
      return iequals(view(f.name), "upgrade") && lists_protocol(view(f.value), tunnel_protocol);
    });
  }

  [[nodiscard]] bool has_field(std::string_view name) const noexcept {
    return std::any_of(fields.begin(), fields.end(),
                       [&](const field& f) { return iequals(view(f.name), name); });
  }

  void fail(errc e) {
    if (!local) {
      local = e;
    }
  }

  [[nodiscard]] std::string_view view(const piece& pc) const noexcept {
    return pc.spilled ? std::string_view{arena.data() + pc.offset, pc.len}
                      : std::string_view{pc.ptr, pc.len};
  }

  void spill(piece& pc) {
    if (pc.spilled || pc.len == 0) {
      return;
    }
    pc.offset = static_cast<std::uint32_t>(arena.size());
    arena.append(pc.ptr, pc.len);
    pc.spilled = true;
  }

  void append(piece& pc, const char* at, std::size_t n) {
    if (pc.len == 0 && !pc.spilled) {
      pc.ptr = at;
      pc.len = static_cast<std::uint32_t>(n);
      return;
    }
    if (!pc.spilled && pc.ptr + pc.len == at) {
      pc.len += static_cast<std::uint32_t>(n);
      return;
    }
    // Arrived in pieces (split across reads): the run moves to the arena, where it is the last
    // thing written, so later pieces of it stay contiguous.
    spill(pc);
    arena.append(at, n);
    pc.len += static_cast<std::uint32_t>(n);
  }

  // The feed's bytes go away when it returns: move every view of the unfinished head into the
  // arena, in order, so the piece still being written is the arena's last.
  void spill_all() {
    spill(status_text);
    spill(url);
    for (auto& f : fields) {
      spill(f.name);
      spill(f.value);
    }
  }

  void reset_message() {
    chunk = chunk_state::off;
    arena.clear();
    status_text = {};
    url = {};
    fields.clear();
    in_value = false;
    body_bytes = 0;
    in_head = true;
    in_message = false;
    reset_scan();
  }

  void reset_scan() { scan = {}; }

  // What http-parser lets through in the head and tether does not: a bare CR or LF (every LF
  // must follow a CR, every CR be followed by LF), a line that starts with whitespace (obsolete
  // folding, or space after the start line), and a start line with more than one space between
  // its parts or a status code that is not three digits. Streaming: the head may come in pieces.
  errc scan_head(const char* begin, const char* end) {
    // The scan runs on copies: the bytes read are chars, which may alias any member, so state
    // kept in members would be stored and reloaded for every byte.
    head_scan st = scan;
    const errc e = scan_bytes(st, begin, end);
    scan = st;
    return e;
  }

  [[gnu::always_inline]] errc scan_bytes(head_scan& st, const char* begin, const char* end) const {
    const auto kind = k;
    const auto max_request_line = limits.max_request_line;
    const auto max_header_bytes = limits.max_header_bytes;
    const auto max_header_count = limits.max_header_count;
    for (const char* c = begin; c != end; ++c) {
      if (st.line > 0 && !st.line_start && !st.prev_cr) {
        // Inside a field line only a few bytes are of interest here: in the name the colon,
        // whitespace and line ends; in the value only CR and LF (on_header_value checks the
        // other bytes). Skip to the next one, counting what was passed over. The limit is the
        // only error a skipped byte could have given, and it is checked before any later one.
        const auto& stops = st.seen_colon ? value_stops : name_stops;
        const char* stop = c;
        while (stop != end && !stops[static_cast<unsigned char>(*stop)]) {
          ++stop;
        }
        st.header_section_bytes += static_cast<std::size_t>(stop - c);
        if (st.header_section_bytes > max_header_bytes) {
          return errc::headers_too_large;
        }
        c = stop;
        if (c == end) {
          break;
        }
      }
      const char ch = *c;
      // The limits, counted here byte by byte so that where the reads split cannot change which
      // error a message gets.
      if (st.line == 0) {
        if (++st.start_line_bytes > max_request_line) {
          return errc::target_too_long;
        }
      } else if (++st.header_section_bytes > max_header_bytes) {
        return errc::headers_too_large;
      }
      if (st.line_start && st.line > 0 && ch != '\r' &&
          static_cast<std::size_t>(st.line) > max_header_count) {
        return errc::too_many_headers;
      }
      if (ch == '\n') {
        if (!st.prev_cr) {
          return errc::bare_line_ending;
        }
        st.prev_cr = false;
        // Empty lines before a request line are allowed (RFC 9112 2.2): still line 0.
        if (st.line > 0 || !st.line_start) {
          ++st.line;
        }
        st.line_start = true;
        continue;
      }
      if (st.prev_cr) {
        return errc::bare_line_ending;
      }
      if (ch == '\r') {
        st.prev_cr = true;
        if (st.line == 0 && st.line_start) {
          continue; // an empty line before the start line
        }
        st.line_start = false;
        if (st.line == 0 && kind == parser::kind::response && st.start_spaces == 1 &&
            st.status_digits != 3) {
          return errc::invalid_status_line;
        }
        // A request line without its version (HTTP/0.9's "GET /"): http-parser would wait for
        // header lines that never come, until the header timeout. Refused at its end instead.
        if (st.line == 0 && kind == parser::kind::request && st.version_chars < 5) {
          return errc::bad_request_line;
        }
        continue;
      }
      if (st.line_start && st.line > 0 && (ch == ' ' || ch == '\t')) {
        return st.line == 1 ? errc::malformed : errc::obsolete_line_folding;
      }
      if (st.line_start) {
        st.seen_colon = false;
      }
      st.line_start = false;
      if (st.line > 0 && !st.seen_colon) {
        if (ch == ':') {
          st.seen_colon = true;
        } else if (ch == ' ' || ch == '\t') {
          return errc::invalid_header; // whitespace between field name and colon
        }
      }
      if (st.line == 0) {
        // The protocol name is "HTTP/" exactly: first on a status line, third on a request line.
        const bool at_version =
            kind == parser::kind::response ? st.start_spaces == 0 : st.start_spaces == 2;
        if (at_version && st.version_chars < 5) {
          if (ch != "HTTP/"[st.version_chars]) {
            return kind == parser::kind::request ? errc::bad_request_line
                                                 : errc::invalid_status_line;
          }
          ++st.version_chars;
        }
        // The request-target: http-parser lets a TAB and a form feed through inside it; a
        // control byte or DEL is never part of one (RFC 9112 3.2, RFC 3986).
        if (kind == parser::kind::request && st.start_spaces == 1 &&
            (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7F)) {
          return errc::invalid_target;
        }
        const bool in_reason = kind == parser::kind::response && st.start_spaces >= 2;
        if (ch == ' ' && !in_reason) {
          if (st.prev_space) {
            return kind == parser::kind::request ? errc::bad_request_line
                                                 : errc::invalid_status_line;
          }
          if (kind == parser::kind::response && st.start_spaces == 1 && st.status_digits != 3) {
            return errc::invalid_status_line;
          }
          ++st.start_spaces;
        } else if (kind == parser::kind::response && st.start_spaces == 1) {
          ++st.status_digits;
        }
        st.prev_space = ch == ' ';
      }
    }
    return errc{};
  }

  // tether's checks on the complete head; then on_head.
  void head_complete() {
    views.clear();
    views.reserve(fields.size());
    for (const auto& f : fields) {
      views.push_back({view(f.name), trim_ows(view(f.value))});
    }
    const header* content_length = nullptr;
    std::vector<const header*> transfer_encodings;
    for (const auto& h : views) {
      if (iequals(h.name, "content-length")) {
        if (content_length != nullptr && content_length->value != h.value) {
          fail(errc::invalid_content_length);
          return;
        }
        content_length = &h;
      } else if (iequals(h.name, "transfer-encoding")) {
        transfer_encodings.push_back(&h); // several fields form one list, in order
      }
    }
    if (content_length != nullptr && !transfer_encodings.empty()) {
      fail(errc::content_length_with_transfer_encoding);
      return;
    }
    bool chunked_last = false;
    bool any = false;
    std::size_t transfer_codings = 0;
    for (const header* transfer_encoding : transfer_encodings) {
      // A comma-separated list of tokens with optional whitespace (SP, HTAB) only; chunked may
      // appear once, last. Anything else is how smuggling attempts hide.
      std::string_view rest = transfer_encoding->value;
      while (true) {
        const auto comma = rest.find(',');
        const auto item = trim_ows(rest.substr(0, comma));
        if (item.empty() || !std::all_of(item.begin(), item.end(), is_tchar) || chunked_last) {
          fail(errc::invalid_transfer_encoding);
          return;
        }
        any = true;
        ++transfer_codings;
        chunked_last = iequals(item, "chunked");
        if (comma == std::string_view::npos) {
          break;
        }
        rest.remove_prefix(comma + 1);
      }
    }
    if (any && k == parser::kind::request && !chunked_last) {
      fail(errc::invalid_transfer_encoding);
      return;
    }
    // A request whose body is in another coding too (gzip, chunked) could be forwarded only by
    // passing on what tether cannot read: 501, as RFC 9112 6.1 advises for a coding it does not
    // understand. (A response's codings are the client's business: they are passed on.)
    if (k == parser::kind::request && transfer_codings > 1) {
      fail(errc::unsupported_transfer_coding);
      return;
    }
    // HTTP/1.x only. A higher minor version is read as the highest this parser implements,
    // HTTP/1.1 (RFC 9110 2.5); another major version cannot be on an HTTP/1.1 connection.
    if (p.http_major != 1) {
      fail(k == parser::kind::response ? errc::invalid_status_line
           : p.http_major >= 2         ? errc::version_not_supported
                                       : errc::bad_request_line);
      return;
    }

    if (k == parser::kind::response && (p.status_code < 100 || p.status_code > 999)) {
      fail(errc::invalid_status_line);
      return;
    }

    message_head head;
    head.version_major = 1;
    head.version_minor = std::min<int>(p.http_minor, 1);
    head.headers = views;
    if (k == parser::kind::request) {
      head.method = http_method_str(static_cast<http_method>(p.method));
      head.target = view(url);
    } else {
      head.status = static_cast<int>(p.status_code);
      head.reason = view(status_text);
    }
    // Connection tokens read by tether (http-parser misses "close" with trailing whitespace).
    bool close_token = false;
    bool keep_alive_token = false;
    for (const auto& h : views) {
      if (!iequals(h.name, "connection")) {
        continue;
      }
      std::string_view rest = h.value;
      while (true) {
        const auto comma = rest.find(',');
        const auto token = trim_ows(rest.substr(0, comma));
        close_token = close_token || iequals(token, "close");
        keep_alive_token = keep_alive_token || iequals(token, "keep-alive");
        if (comma == std::string_view::npos) {
          break;
        }
        rest.remove_prefix(comma + 1);
      }
    }
    head.keep_alive = !close_token && (p.http_minor >= 1 || keep_alive_token);
    if (k == parser::kind::response && head.framing == body_framing::until_close) {
      head.keep_alive = false;
    }
    head.upgrade = p.upgrade != 0;
    // tether and http-parser must agree on where the body ends, or one of them is being fooled.
    if (chunked_last != ((p.flags & F_CHUNKED) != 0)) {
      fail(errc::invalid_transfer_encoding);
      return;
    }
    if (chunked_last) {
      head.framing = body_framing::chunked;
    } else if (content_length != nullptr) {
      head.framing = body_framing::content_length;
      head.content_length = p.content_length;
      if (limits.max_body != 0 && p.content_length > limits.max_body) {
        fail(errc::body_too_large);
        return;
      }
    } else if (k == parser::kind::response) {
      head.framing = body_framing::until_close; // neither length nor chunked: read to the end
    }
    if (k == parser::kind::response &&
        ((p.status_code >= 100 && p.status_code < 200) || p.status_code == 204 ||
         p.status_code == 304 || (p.flags & F_SKIPBODY) != 0)) {
      head.framing = body_framing::none;
    }
    if (head.framing == body_framing::until_close) {
      head.keep_alive = false; // the body ends when the connection does
    }
    // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding is treated as faulty framing:
    // the connection closes after it, whatever else it says.
    if (p.http_minor == 0 && any) {
      head.keep_alive = false;
    }
    chunk = head.framing == body_framing::chunked ? chunk_state::head_lf : chunk_state::off;
    closing = !head.keep_alive;
    in_head = false;
    handler->on_head(head);
  }

  static state& of(http_parser* p) { return *static_cast<state*>(p->data); }

  static int on_message_begin(http_parser* p) {
    of(p).in_message = true;
    return 0;
  }
  static int on_url(http_parser* p, const char* at, std::size_t n) {
    auto& s = of(p);
    s.append(s.url, at, n);
    return 0;
  }
  static int on_status(http_parser* p, const char* at, std::size_t n) {
    auto& s = of(p);
    s.append(s.status_text, at, n);
    return 0;
  }
  static int on_header_field(http_parser* p, const char* at, std::size_t n) {
    auto& s = of(p);
    if (!s.in_head) {
      return 0; // a trailer field after a chunked body: checked by http-parser, not reported
    }
    if (s.fields.empty() || s.in_value) {
      s.fields.emplace_back();
      s.in_value = false;
    }
    s.append(s.fields.back().name, at, n);
    return 0;
  }
  static int on_header_value(http_parser* p, const char* at, std::size_t n) {
    auto& s = of(p);
    for (std::size_t i = 0; i < n; ++i) {
      const auto c = static_cast<unsigned char>(at[i]);
      if (c == '\r' || c == '\n') {
        s.fail(errc::obsolete_line_folding);
        return 1;
      }
      if ((c < 0x20 && c != '\t') || c == 0x7F) {
        s.fail(errc::invalid_header);
        return 1;
      }
    }
    if (!s.in_head) {
      return 0; // trailer
    }
    if (s.fields.empty()) {
      s.fail(errc::invalid_header);
      return 1;
    }
    s.in_value = true;
    s.append(s.fields.back().value, at, n);
    return 0;
  }
  static int on_headers_complete(http_parser* p) {
    auto& s = of(p);
    if (s.k == parser::kind::request && p->method != HTTP_CONNECT && p->upgrade != 0 &&
        (!s.tunnel_upgrades || p->http_minor == 0 || !s.upgrade_listed())) {
      p->upgrade = 0; // read on as HTTP: http-parser looks at it only after this callback
    }
    // Stop here, so feed() can check the head's bytes before anyone sees the head.
    s.paused = pause_reason::head;
    http_parser_pause(p, 1);
    const bool bodiless_status =
        s.k == parser::kind::response && ((p->status_code >= 100 && p->status_code < 200) ||
                                          p->status_code == 204 || p->status_code == 304);
    return s.skip_body || bodiless_status ? 1 : 0;
  }
  static int on_body(http_parser* p, const char* at, std::size_t n) {
    auto& s = of(p);
    if (s.chunk != chunk_state::off) {
      if (!s.scan_chunks(s.chunk_scan_from, at) || s.chunk != chunk_state::data ||
          n > s.chunk_left) {
        s.fail(errc::invalid_chunk);
        return 1;
      }
      s.chunk_left -= n;
      if (s.chunk_left == 0) {
        s.chunk = chunk_state::data_cr;
      }
      s.chunk_scan_from = at + n;
    }
    s.body_bytes += n;
    if (s.limits.max_body != 0 && s.body_bytes > s.limits.max_body) {
      s.fail(errc::body_too_large);
      return 1;
    }
    s.handler->on_body({at, n});
    return 0;
  }
  static int on_message_complete(http_parser* p) {
    auto& s = of(p);
    s.paused = pause_reason::message;
    http_parser_pause(p, 1);
    return 0;
  }
};

parser::parser(kind k, parser_limits limits) : s_{std::make_unique<state>()} {
  raise_http_parser_limit();
  s_->k = k;
  s_->limits = limits;
  http_parser_init(&s_->p, k == kind::request ? HTTP_REQUEST : HTTP_RESPONSE);
  s_->p.data = s_.get();
  http_parser_settings_init(&s_->settings);
  s_->settings.on_message_begin = &state::on_message_begin;
  s_->settings.on_url = &state::on_url;
  s_->settings.on_status = &state::on_status;
  s_->settings.on_header_field = &state::on_header_field;
  s_->settings.on_header_value = &state::on_header_value;
  s_->settings.on_headers_complete = &state::on_headers_complete;
  s_->settings.on_body = &state::on_body;
  s_->settings.on_message_complete = &state::on_message_complete;
}

parser::~parser() = default;

void parser::set_max_body(std::uint64_t bytes) noexcept {
  s_->limits.max_body = bytes;
}

bool parser::idle() const noexcept {
  return !s_->in_message;
}

void parser::tunnel_upgrades(bool tunnel) noexcept {
  s_->tunnel_upgrades = tunnel;
}

bool lists_protocol(std::string_view upgrade_value, std::string_view protocol) noexcept {
  std::string_view rest = upgrade_value;
  for (;;) {
    const auto comma = rest.find(',');
    const auto token = trim_ows(rest.substr(0, comma));
    if (iequals(token.substr(0, token.find('/')), protocol)) {
      return true;
    }
    if (comma == std::string_view::npos) {
      return false;
    }
    rest.remove_prefix(comma + 1);
  }
}

void parser::tunnel_only(std::string protocol) {
  s_->tunnel_protocol = std::move(protocol);
}

bool parser::upgraded() const noexcept {
  return s_->upgraded;
}

std::size_t parser::feed(std::string_view data, parser_handler& handler) {
  if (error_ || s_->upgraded) {
    return 0;
  }
  auto& s = *s_;
  s.handler = &handler;
  std::size_t pos = 0;
  while (pos < data.size()) {
    if (s.closing && !s.in_message) {
      // The last message closes the connection: whatever follows is not a request to serve.
      error_ = errc::data_after_close;
      return pos;
    }
    const std::size_t head_from = pos;
    s.skip_body = head_response_ && s.k == kind::response;
    s.chunk_scan_from = data.data() + pos;
    const std::size_t n =
        http_parser_execute(&s.p, &s.settings, data.data() + pos, data.size() - pos);
    const auto e = HTTP_PARSER_ERRNO(&s.p);
    // Report the first violation in the byte stream, wherever the reads were split: tether's
    // scan of the head bytes accepted so far comes before a callback's or http-parser's error.
    // `chunks`: also scan the chunk framing of this run (once only: the framing check after
    // execute below scans the same bytes when no callback failed).
    const auto scan_first = [&](bool chunks) -> bool {
      if (!s.in_head) {
        // Chunk framing bytes after the last body piece come before a trailer's error.
        if (chunks && s.chunk != state::chunk_state::off &&
            !s.scan_chunks(s.chunk_scan_from, data.data() + pos + n)) {
          error_ = errc::invalid_chunk;
          return true;
        }
        return false;
      }
      const auto bad = s.scan_head(data.data() + head_from, data.data() + pos + n);
      if (bad == errc{}) {
        return false;
      }
      error_ = bad;
      return true;
    };
    if (s.local) {
      if (!scan_first(true)) {
        error_ = s.local;
      }
      return pos + n;
    }
    // Framing bytes after the last body piece of this run (the pause for the head comes before
    // any of its body).
    if (s.chunk != state::chunk_state::off && !s.in_head && s.paused != state::pause_reason::head &&
        !s.scan_chunks(s.chunk_scan_from, data.data() + pos + n)) {
      error_ = errc::invalid_chunk;
      return pos + n;
    }
    if (e == HPE_PAUSED) {
      http_parser_pause(&s.p, 0);
      const auto reason = std::exchange(s.paused, state::pause_reason::none);
      if (reason == state::pause_reason::head) {
        // The head's bytes are [head_from, pos + n) of this feed (earlier feeds were scanned
        // already). A CR left last must be followed by LF in the next byte.
        if (const auto bad = s.scan_head(data.data() + head_from, data.data() + pos + n);
            bad != errc{}) {
          error_ = bad;
          return pos + n;
        }
        // The head's last byte (its final LF) is the one http-parser stopped on: it must follow
        // a CR, and be a LF.
        if (!s.scan.prev_cr || pos + n >= data.size() || data[pos + n] != '\n') {
          error_ = errc::bare_line_ending;
          return pos + n;
        }
        s.head_complete();
        if (s.local) {
          error_ = s.local;
          return pos + n;
        }
        if (s.k == kind::request || s.p.status_code >= 200) {
          head_response_ = false; // a 1xx is interim: the final response still answers HEAD
        }
      } else {
        handler.on_message_complete();
        const bool upgrade = s.p.upgrade != 0;
        s.reset_message();
        if (upgrade) {
          // An Upgrade takes effect after the request (body included); CONNECT right after the
          // head. The rest of the bytes are the tunnel's.
          s.upgraded = true;
          return pos + n;
        }
      }
      pos += n;
      continue;
    }
    if (e != HPE_OK) {
      if (scan_first(false)) {
        return pos + n;
      }
      error_ = from_http_errno(e, s.k);
      // http-parser reports these two under content-length errors; say what they are.
      if (e == HPE_UNEXPECTED_CONTENT_LENGTH && s.in_head && s.has_field("transfer-encoding")) {
        error_ = errc::content_length_with_transfer_encoding;
      } else if (e == HPE_INVALID_CONTENT_LENGTH && !s.in_head) {
        error_ = errc::invalid_chunk; // a chunk size too large for 64 bits
      }
      return pos + n;
    }
    if (s.in_head) {
      if (const auto bad = s.scan_head(data.data() + head_from, data.data() + pos + n);
          bad != errc{}) {
        error_ = bad;
        return pos + n;
      }
    }
    pos += n;
    break;
  }
  if (s.in_head) {
    s.spill_all();
  }
  return pos;
}

void parser::finish(parser_handler& handler) {
  if (error_ || s_->upgraded) {
    return;
  }
  auto& s = *s_;
  s.handler = &handler;
  http_parser_execute(&s.p, &s.settings, nullptr, 0);
  const auto e = HTTP_PARSER_ERRNO(&s.p);
  if (e == HPE_PAUSED) {
    http_parser_pause(&s.p, 0);
    if (std::exchange(s.paused, state::pause_reason::none) == state::pause_reason::message) {
      handler.on_message_complete();
      s.reset_message();
    }
    return;
  }
  if (e != HPE_OK || s.in_message) {
    error_ = errc::unexpected_eof;
  }
}

} // namespace tether::http
