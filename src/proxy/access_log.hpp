#pragma once
// The access log: a line per answer, formatted by the worker and written by spdlog's own thread.

#include <string>
#include <string_view>
#include <system_error>

#include "shared_state.hpp"

namespace tether::proxy::detail {

/// Opens the access log at `path` (appending) on a thread of its own: a worker only formats a
/// line and queues it. Returns the error when the file cannot be opened.
std::error_code open_access_log(shared_state& s, const std::string& path);

/// One line: client, method, target, status, duration, cluster, upstream; text or JSON.
void log_access(shared_state& s, std::string_view client, int status, steady::duration took,
                std::string_view method, std::string_view target, std::string_view cluster,
                std::string_view upstream, std::string_view client_subject = {});

} // namespace tether::proxy::detail
