#pragma once

#include <string>

namespace tether::pg::detail {

// libpq's messages on one line, for logs and query_outcome::message: lines indented with a tab
// continue the line before ("server closed the connection unexpectedly\n\tThis probably
// means..."), other lines are joined with "; ", and runs of spaces ("FATAL:  ...") become one.
std::string tidy(const char* message);

} // namespace tether::pg::detail
