#include "tether/core/detached.hpp"

#include <atomic>
#include <cstdio>
#include <string>

namespace tether {
namespace {

std::atomic<exception_reporter> reporter{nullptr};

} // namespace

void set_exception_reporter(exception_reporter r) noexcept {
  reporter.store(r);
}

void report_exceptions::report(std::string_view what, const std::exception_ptr& e) noexcept {
  std::string line = "tether: ";
  line.append(what).append(" ended with an exception: ");
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    line.append(ex.what());
  } catch (...) {
    line.append("(not a std::exception)");
  }
  if (const auto r = reporter.load()) {
    r(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

} // namespace tether
