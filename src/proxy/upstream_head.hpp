#pragma once
// A request's head as it goes upstream (RFC 9110 7.6), and how often it came through tether.

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "tether/core/text.hpp"
#include "tether/http/request_target.hpp"
#include "tether/http/serializer.hpp"

#include "message_head.hpp"

namespace tether::proxy::detail {

// A request's head as it goes upstream.

/// How many times a request went through tether already: its Via entries received by "tether"
/// (RFC 9110 7.6.3: Via = #( received-protocol RWS received-by [ RWS comment ] )).
inline std::size_t tether_hops(const owned_head& head) {
  std::size_t hops = 0;
  for (const auto& f : head.fields) {
    if (!iequals(f.name, "via")) {
      continue;
    }
    std::string_view rest = f.value;
    for (;;) {
      const auto comma = rest.find(',');
      auto entry = rest.substr(0, comma);
      entry.remove_prefix(std::min(entry.find_first_not_of(" \t"), entry.size()));
      if (const auto space = entry.find(' '); space != std::string_view::npos) {
        const auto by = entry.substr(space + 1);
        hops += by.substr(0, by.find(' ')) == "tether" ? 1U : 0U;
      }
      if (comma == std::string_view::npos) {
        break;
      }
      rest.remove_prefix(comma + 1);
    }
  }
  return hops;
}

/// The head a request goes upstream with (RFC 9110 7.6): without hop-by-hop fields; with Via and
/// X-Forwarded-For and -Proto; an absolute-form target in origin-form with a Host made from its
/// authority (RFC 9112 3.2.2: a proxy MUST replace the Host); an HTTP/1.0 request without Host
/// given the upstream's, since HTTP/1.1 requires one; Max-Forwards one less (RFC 9110 7.6.2);
/// Expect only when it is forwarded. Views into the request's head: it lives as long as that.
class upstream_head {
public:
  upstream_head(const owned_head& head, const http::request_target& target,
                std::string_view authority, std::string_view client_ip, bool forward_expect,
                std::optional<std::uint64_t> max_forwards)
      : head_{head}, authority_{authority}, forwarded_for_{client_ip} {
    if (const auto prior = head.find("x-forwarded-for")) {
      forwarded_for_ = std::string{*prior} + ", " + std::string{client_ip};
    }
    if (target.form == http::target_form::absolute) {
      origin_form_ = target.path_and_query.starts_with('/')
                         ? std::string{target.path_and_query}
                         : "/" + std::string{target.path_and_query};
    }
    // The parser reads any HTTP/1.x as 1.0 or 1.1: the Via says which.
    add({"Via", head.version_minor == 0 ? "1.0 tether" : "1.1 tether"});
    add({"X-Forwarded-For", forwarded_for_}, "x-forwarded-for");
    add({"X-Forwarded-Proto", "http"}, "x-forwarded-proto");
    if (max_forwards) {
      max_forwards_ = std::to_string(*max_forwards);
      add({"Max-Forwards", max_forwards_}, "max-forwards");
    }
    if (target.form == http::target_form::absolute || authority.empty()) {
      host_slot_ = extra_count_;
      add({"Host", authority}, "host");
    }
    if (!forward_expect) {
      dropped_[drop_count_++] = "expect";
    }
  }
  upstream_head(const upstream_head&) = delete;
  upstream_head& operator=(const upstream_head&) = delete;

  /// The request asks for a WebSocket tunnel the proxy will make: Upgrade goes upstream, with
  /// `Connection: upgrade`.
  void keep_upgrade() noexcept { tunnel_ = true; }

  /// The request has no Host of its own: each attempt's head names its upstream.
  [[nodiscard]] bool needs_upstream_host() const noexcept { return authority_.empty(); }

  /// Writes the head into `out` (emptied first); `upstream` is the Host when the request has
  /// none.
  void write(std::string& out, std::string_view upstream) const {
    out.clear();
    auto view = head_.view();
    view.version_major = 1; // an intermediary sends its own version (RFC 9110 6.2)
    view.version_minor = 1;
    if (!origin_form_.empty()) {
      view.target = origin_form_;
    }
    const auto dropped = std::span{dropped_}.first(drop_count_);
    if (authority_.empty()) {
      auto extra = extra_; // the upstream's name as the Host of this attempt
      extra[host_slot_].value = upstream;
      http::write_request_head(out, view, {tunnel_, std::span{extra}.first(extra_count_), dropped});
    } else {
      http::write_request_head(out, view,
                               {tunnel_, std::span{extra_}.first(extra_count_), dropped});
    }
  }

private:
  static constexpr std::size_t no_slot = 8;

  // A field added after the request's own, and the received one it replaces (if any).
  void add(http::header field, std::string_view replaces = {}) {
    extra_[extra_count_++] = field;
    if (!replaces.empty()) {
      dropped_[drop_count_++] = replaces;
    }
  }

  const owned_head& head_;
  bool tunnel_ = false;
  std::string_view authority_;
  std::string forwarded_for_;
  std::string origin_form_;
  std::string max_forwards_;
  std::array<http::header, 5> extra_{};
  std::size_t extra_count_ = 0;
  std::size_t host_slot_ = no_slot;
  std::array<std::string_view, 5> dropped_{};
  std::size_t drop_count_ = 0;
};

} // namespace tether::proxy::detail
