#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

namespace tether::app {

/// How `tether chaos` runs: toxiproxy-server's flags.
struct chaos_command_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8474;
  std::string config_file{};           ///< a JSON array of proxies, as /populate takes
  std::optional<std::uint64_t> seed{}; ///< reproducible toxicity coin flips, jitter, slices
};

/// `tether chaos`: the REST API on host:port and the proxies it creates, on one thread, until
/// SIGINT, SIGTERM or SIGQUIT (SIGHUP, SIGUSR1 and SIGUSR2 are logged and ignored). Returns the
/// exit code: 0 after a signal, 2 when the config file cannot be read or is invalid, 1 when the
/// API address cannot be bound (the reason goes to `err`).
int run_chaos(const chaos_command_options& options, std::ostream& out, std::ostream& err);

} // namespace tether::app
