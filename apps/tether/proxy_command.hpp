#pragma once

#include <functional>
#include <iosfwd>

#include "tether/proxy/config.hpp"

namespace tether::app {

/// What `tether proxy` runs besides the proxy.
struct proxy_command_options {
  /// Start the built-in demo upstreams (127.0.0.1:8081 and :8082) first: the default config's.
  bool demo_upstreams = false;
  /// Where SIGHUP (and the admin listener's POST /reload) read the config again.
  std::function<proxy::load_result()> source{};
  /// Take the listening sockets over from the tether answering on admin.upgrade_socket (which
  /// then drains and ends) instead of binding them: an upgrade that refuses no connection.
  bool take_over = false;
};

/// `tether proxy`: starts the proxy, then waits for signals. SIGINT, SIGTERM and SIGQUIT drain it
/// and return 0; SIGHUP reloads the config from `options.source` (a config that fails changes
/// nothing, and its errors are printed); SIGUSR1 and SIGUSR2 are logged and ignored (no signal a
/// user may send ends the process without a drain); SIGPIPE is ignored. A new tether that takes
/// the listeners over (`--take-over`) drains this one as SIGTERM would. Returns 1 when the proxy
/// cannot start (the reason, with the address, goes to `err`).
int run_proxy(const proxy::config& c, std::ostream& out, std::ostream& err,
              const proxy_command_options& options);

} // namespace tether::app
