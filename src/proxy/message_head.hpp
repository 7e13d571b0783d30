#pragma once
// Message heads copied out of the parser, in buffers reused from a worker's pool.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tether/core/text.hpp"
#include "tether/http/fields.hpp"
#include "tether/http/parser.hpp"
#include "tether/http/request_target.hpp"

namespace tether::proxy::detail {

// Message heads copied out of the parser (its views die with the read buffer's next fill).

/// A head whose strings all view one buffer of its own. Heads are reused through a worker's
/// head_pool, so once warm a message costs no allocation: the buffer and the field list keep
/// their capacity. Never moved while in use (held by pointer), so the views stay valid.
struct owned_head {
  std::string bytes; // what the views below point into
  std::string_view method;
  std::string_view target;
  int status = 0;
  std::string_view reason;
  int version_major = 1;
  int version_minor = 1;
  std::vector<http::header> fields;
  http::host_fields host; // its Host fields (a request's)
  bool has_via = false;   // it has a Via field
  http::body_framing framing = http::body_framing::none;
  std::uint64_t content_length = 0;
  bool keep_alive = true;
  bool upgrade = false;

  void assign(const http::message_head& h) {
    std::size_t size = h.method.size() + h.target.size() + h.reason.size();
    for (const auto& f : h.headers) {
      size += f.name.size() + f.value.size();
    }
    bytes.clear();
    bytes.reserve(size); // every append below fits: no view is moved by a reallocation
    const auto keep = [this](std::string_view v) {
      const auto at = bytes.size();
      bytes.append(v);
      return std::string_view{bytes.data() + at, v.size()};
    };
    method = keep(h.method);
    target = keep(h.target);
    reason = keep(h.reason);
    fields.clear();
    host = {};
    has_via = false;
    for (const auto& f : h.headers) {
      const auto name = keep(f.name);
      fields.push_back({name, keep(f.value)});
      // The fields every request is checked for, noted in the one pass over them.
      if (name.size() == 4 && iequals(name, "host")) {
        if (host.count++ == 0) {
          host.value = fields.back().value;
        }
      } else if (name.size() == 3 && iequals(name, "via")) {
        has_via = true;
      }
    }
    status = h.status;
    version_major = h.version_major;
    version_minor = h.version_minor;
    framing = h.framing;
    content_length = h.content_length;
    keep_alive = h.keep_alive;
    upgrade = h.upgrade;
  }

  /// A message_head viewing this one (for the serializer).
  [[nodiscard]] http::message_head view() const {
    http::message_head h;
    h.method = method;
    h.target = target;
    h.status = status;
    h.reason = reason;
    h.version_major = version_major;
    h.version_minor = version_minor;
    h.headers = fields;
    h.framing = framing;
    h.content_length = content_length;
    h.keep_alive = keep_alive;
    h.upgrade = upgrade;
    return h;
  }

  /// The value of the first field named `name` (case-insensitive), if any.
  [[nodiscard]] std::optional<std::string_view> find(std::string_view name) const {
    if (const auto* f = http::find_field(fields, name)) {
      return f->value;
    }
    return std::nullopt;
  }
};

/// A worker's spare heads. Declared before the worker's io_context, so it outlives every
/// coroutine frame that holds a head (frames still pending at a hard stop die with the context).
struct head_pool {
  std::vector<std::unique_ptr<owned_head>> spare;
};

/// Gives a head back to its pool when its holder is done with it (a big one is freed instead:
/// one large head must not pin its memory for good).
struct head_return {
  head_pool* pool = nullptr;
  void operator()(owned_head* h) const noexcept {
    // A few hundred cover the requests a worker has in flight; past that a burst's heads are
    // freed rather than kept for good.
    if (pool != nullptr && h->bytes.capacity() <= 16 * 1024 && pool->spare.size() < 256) {
      pool->spare.emplace_back(h);
      return;
    }
    delete h; // NOLINT(cppcoreguidelines-owning-memory): a unique_ptr's deleter
  }
};
using head_ptr = std::unique_ptr<owned_head, head_return>;

} // namespace tether::proxy::detail
