#include "access_log.hpp"

#include <cerrno>
#include <cstdio>

#include <spdlog/sinks/basic_file_sink.h>

namespace tether::proxy::detail {

std::error_code open_access_log(shared_state& s, const std::string& path) {
  if (std::FILE* probe = std::fopen(path.c_str(), "a")) {
    std::fclose(probe);
  } else {
    return {errno, std::system_category()};
  }
  s.access_threads = std::make_shared<spdlog::details::thread_pool>(8192, 1);
  s.access = std::make_shared<spdlog::async_logger>(
      "access", std::make_shared<spdlog::sinks::basic_file_sink_mt>(path), s.access_threads,
      spdlog::async_overflow_policy::block);
  s.access->set_pattern(s.json_logs ? R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z",%v})"
                                    : "[%Y-%m-%d %H:%M:%S.%e] %v");
  return {};
}

void log_access(shared_state& s, std::string_view client, int status, steady::duration took,
                std::string_view method, std::string_view target, std::string_view cluster,
                std::string_view upstream, std::string_view client_subject) {
  if (!s.access) {
    return;
  }
  const double ms = std::chrono::duration<double, std::milli>(took).count();
  // The client certificate's subject, after the rest and only when there is one: lines of
  // plain connections stay as they were.
  if (s.json_logs) {
    s.access->info(
        R"("client":{},"method":{},"target":{},"status":{},"duration_ms":{:.3f},"cluster":{},"upstream":{}{}{})",
        json_string(client), json_string(method), json_string(target), status, ms,
        json_string(cluster), json_string(upstream),
        client_subject.empty() ? "" : R"(,"client_subject":)",
        client_subject.empty() ? "" : json_string(client_subject));
  } else {
    s.access->info("{} \"{} {}\" {} {:.3f}ms cluster={} upstream={}{}{}", client, method, target,
                   status, ms, cluster, upstream, client_subject.empty() ? "" : " client_subject=",
                   client_subject.empty() ? "" : json_string(client_subject));
  }
}

} // namespace tether::proxy::detail
