#include "tether/chaos/model.hpp"

#include "tether/core/host_port.hpp"
#include "tether/core/text.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <vector>

namespace tether::chaos {

using json = api_json;
using namespace messages;

std::string_view to_string(stream s) noexcept {
  return s == stream::upstream ? "upstream" : "downstream";
}

std::optional<stream> stream_from(std::string_view s) noexcept {
  if (iequals(s, "upstream")) {
    return stream::upstream;
  }
  if (iequals(s, "downstream")) {
    return stream::downstream;
  }
  return std::nullopt;
}

std::string_view to_string(toxic_kind k) noexcept {
  switch (k) {
  case toxic_kind::latency:
    return "latency";
  case toxic_kind::bandwidth:
    return "bandwidth";
  case toxic_kind::slow_close:
    return "slow_close";
  case toxic_kind::timeout:
    return "timeout";
  case toxic_kind::reset_peer:
    return "reset_peer";
  case toxic_kind::slicer:
    return "slicer";
  case toxic_kind::limit_data:
    return "limit_data";
  }
  return "unknown";
}

std::optional<toxic_kind> toxic_kind_from(std::string_view s) noexcept {
  for (const auto k :
       {toxic_kind::latency, toxic_kind::bandwidth, toxic_kind::slow_close, toxic_kind::timeout,
        toxic_kind::reset_peer, toxic_kind::slicer, toxic_kind::limit_data}) {
    if (to_string(k) == s) {
      return k;
    }
  }
  return std::nullopt;
}

bool split_host_port(std::string_view text, std::string& host, std::uint16_t& port) {
  if (!tether::split_host_port(text, host, port)) {
    return false;
  }
  if (host.empty()) {
    host = "0.0.0.0"; // Toxiproxy's ":port": every address
  }
  return true;
}

namespace {

json attributes_of(const toxic& t) {
  switch (t.kind) {
  case toxic_kind::latency:
    return {{"latency", t.latency}, {"jitter", t.jitter}};
  case toxic_kind::bandwidth:
    return {{"rate", t.rate}};
  case toxic_kind::slow_close:
    return {{"delay", t.delay}};
  case toxic_kind::timeout:
    return {{"timeout", t.timeout}};
  case toxic_kind::reset_peer:
    return {{"timeout", t.timeout}};
  case toxic_kind::slicer:
    return {
        {"average_size", t.average_size}, {"size_variation", t.size_variation}, {"delay", t.delay}};
  case toxic_kind::limit_data:
    return {{"bytes", t.bytes}};
  }
  return json::object();
}

} // namespace

json to_json(const toxic& t) {
  return {{"attributes", attributes_of(t)},
          {"name", t.name},
          {"type", to_string(t.kind)},
          {"stream", to_string(t.direction)},
          {"toxicity", t.toxicity}};
}

std::optional<json> parse_body(std::string_view body) {
  auto parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded()) {
    return std::nullopt;
  }
  return parsed;
}

namespace {

// Reads an optional field of the expected JSON type; a present field of another type is a bad
// body (as Go's decoder refuses it).
template <class T>
bool read_field(const json& object, const char* name, T& out) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) {
    return true;
  }
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) {
      return false;
    }
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) {
      return false;
    }
  } else if constexpr (std::is_same_v<T, double>) {
    if (!it->is_number()) {
      return false;
    }
  } else {
    if (!it->is_number_integer()) {
      return false;
    }
  }
  out = it->get<T>();
  return true;
}

} // namespace

// A proxy body onto `config` (fields absent keep their value). The error names the problem.
std::optional<api_error> read_proxy(const json& body, proxy_config& config) {
  if (!body.is_object() || !read_field(body, "name", config.name) ||
      !read_field(body, "listen", config.listen) ||
      !read_field(body, "upstream", config.upstream) ||
      !read_field(body, "enabled", config.enabled)) {
    return api_error{400, std::string{bad_request_body}};
  }
  return std::nullopt;
}

std::optional<api_error> check_new_proxy(proxy_config& config) {
  if (config.name.empty()) {
    return api_error{400, "missing required field: name"};
  }
  if (config.upstream.empty()) {
    return api_error{400, "missing required field: upstream"};
  }
  if (config.listen.empty()) {
    config.listen = "127.0.0.1:0";
  }
  std::string host;
  std::uint16_t port = 0;
  if (!split_host_port(config.listen, host, port)) {
    return api_error{400, "listen address is not host:port: " + config.listen};
  }
  if (!split_host_port(config.upstream, host, port)) {
    return api_error{400, "upstream address is not host:port: " + config.upstream};
  }
  return std::nullopt;
}

// Reads the attributes object of a toxic body onto `t` (absent ones keep their value). tether
// refuses negative values, which Toxiproxy takes as given (and then misbehaves on).
std::optional<api_error> read_attributes(const json& body, toxic& t) {
  const auto attrs = body.find("attributes");
  if (attrs == body.end() || attrs->is_null()) {
    return std::nullopt;
  }
  if (!attrs->is_object()) {
    return api_error{400, std::string{bad_request_body} + ": attributes must be an object"};
  }
  // Only the attributes of the toxic's own type are read; others are ignored, as Go's decoder
  // ignores fields its struct lacks (so a latency toxic never holds an invisible "delay").
  std::vector<std::pair<const char*, std::int64_t*>> fields;
  switch (t.kind) {
  case toxic_kind::latency:
    fields = {{"latency", &t.latency}, {"jitter", &t.jitter}};
    break;
  case toxic_kind::bandwidth:
    fields = {{"rate", &t.rate}};
    break;
  case toxic_kind::slow_close:
    fields = {{"delay", &t.delay}};
    break;
  case toxic_kind::timeout:
  case toxic_kind::reset_peer:
    fields = {{"timeout", &t.timeout}};
    break;
  case toxic_kind::slicer:
    fields = {{"average_size", &t.average_size},
              {"size_variation", &t.size_variation},
              {"delay", &t.delay}};
    break;
  case toxic_kind::limit_data:
    fields = {{"bytes", &t.bytes}};
    break;
  }
  for (const auto& [name, field] : fields) {
    if (!read_field(*attrs, name, *field)) {
      return api_error{400, std::string{bad_request_body} + ": attribute " + name +
                                " must be a whole number"};
    }
    if (*field < 0) {
      return api_error{400, std::string{bad_request_body} + ": attribute " + name +
                                " must not be negative"};
    }
  }
  return std::nullopt;
}

std::optional<api_error> read_toxicity(const json& body, toxic& t) {
  if (!read_field(body, "toxicity", t.toxicity)) {
    return api_error{400, std::string{bad_request_body} + ": toxicity must be a number"};
  }
  if (t.toxicity < 0.0 || t.toxicity > 1.0) {
    return api_error{400, std::string{bad_request_body} + ": toxicity must be between 0 and 1"};
  }
  return std::nullopt;
}

// A new toxic, checked in Toxiproxy's order: body, stream, default name, type; attributes last.
std::optional<api_error> read_new_toxic(const json& body, toxic& t) {
  if (!body.is_object()) {
    return api_error{400, std::string{bad_request_body}};
  }
  std::string type;
  std::string direction{"downstream"};
  if (!read_field(body, "name", t.name) || !read_field(body, "type", type) ||
      !read_field(body, "stream", direction)) {
    return api_error{400, std::string{bad_request_body}};
  }
  const auto s = stream_from(direction);
  if (!s) {
    return api_error{400, std::string{invalid_stream}};
  }
  t.direction = *s;
  if (t.name.empty()) {
    t.name = type + "_" + std::string{to_string(t.direction)};
  }
  const auto kind = toxic_kind_from(type);
  if (!kind) {
    return api_error{400, std::string{invalid_toxic_type}};
  }
  t.kind = *kind;
  if (auto e = read_toxicity(body, t)) {
    return e;
  }
  return read_attributes(body, t);
}

} // namespace tether::chaos
