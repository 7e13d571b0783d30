#pragma once
// What the commands share about signals.

#include <csignal>

namespace tether::app {

/// "SIGHUP", ... for the signals the commands handle; "a signal" for any other.
inline const char* signal_name(int signal) noexcept {
  switch (signal) {
  case SIGINT:
    return "SIGINT";
  case SIGTERM:
    return "SIGTERM";
  case SIGQUIT:
    return "SIGQUIT";
  case SIGHUP:
    return "SIGHUP";
  case SIGUSR1:
    return "SIGUSR1";
  case SIGUSR2:
    return "SIGUSR2";
  default:
    return "a signal";
  }
}

} // namespace tether::app
