#pragma once

// What tether chaos's API reads and writes, apart from the sockets: proxy and toxic settings,
// their JSON (Toxiproxy's shapes) and the checks on API bodies. No Asio here, so the fuzz preset
// (clang) builds it and the API-body fuzz target runs on it.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "tether/chaos/toxic.hpp"

namespace tether::chaos {

/// What a proxy is: its name, where it listens, where it forwards to.
struct proxy_config {
  std::string name;
  std::string listen;   ///< "host:port"; port 0 picks one (the proxy then says which)
  std::string upstream; ///< "host:port"
  bool enabled = true;
};

/// An error as Toxiproxy reports it: {"error": message, "status": status}.
struct api_error {
  int status = 400;
  std::string message;
};

/// Toxiproxy's error messages, verbatim, so clients that match on them keep working.
namespace messages {
inline constexpr std::string_view bad_request_body = "bad request body";
inline constexpr std::string_view proxy_not_found = "proxy not found";
inline constexpr std::string_view proxy_exists = "proxy already exists";
inline constexpr std::string_view toxic_not_found = "toxic not found";
inline constexpr std::string_view toxic_exists = "toxic already exists";
inline constexpr std::string_view invalid_stream =
    "stream was invalid, can be either upstream or downstream";
inline constexpr std::string_view invalid_toxic_type = "invalid toxic type";
} // namespace messages

/// JSON with its fields in the order written, as Toxiproxy (Go) marshals them.
using api_json = nlohmann::ordered_json;

/// Splits "host:port" ("[v6]:port" too; an empty host is 0.0.0.0). False when it does not parse.
bool split_host_port(std::string_view text, std::string& host, std::uint16_t& port);

/// The body as JSON, or nullopt when it is not JSON.
[[nodiscard]] std::optional<api_json> parse_body(std::string_view body);

/// A proxy body onto `config`: fields present overwrite, absent ones stay. Fields of the wrong
/// type are a bad body.
[[nodiscard]] std::optional<api_error> read_proxy(const api_json& body, proxy_config& config);
/// The checks on a new proxy: name and upstream present, addresses host:port; an empty listen
/// becomes 127.0.0.1:0.
[[nodiscard]] std::optional<api_error> check_new_proxy(proxy_config& config);

/// A new toxic, checked in Toxiproxy's order: body, stream, default name, type; then toxicity
/// and attributes.
[[nodiscard]] std::optional<api_error> read_new_toxic(const api_json& body, toxic& t);
/// `toxicity` of a body onto `t`, in [0, 1].
[[nodiscard]] std::optional<api_error> read_toxicity(const api_json& body, toxic& t);
/// The attributes of a body onto `t` (merged), whole numbers, not negative.
[[nodiscard]] std::optional<api_error> read_attributes(const api_json& body, toxic& t);

/// A toxic as Toxiproxy shows it: {"attributes", "name", "type", "stream", "toxicity"}.
[[nodiscard]] api_json to_json(const toxic& t);

} // namespace tether::chaos
