// Fuzzes tether proxy's configuration loader (YAML through yaml-cpp, then tether's checks). Any
// input must end in a whole config or in located errors, never a crash or a hang; an accepted
// config must be sound (listeners, routes to clusters that exist, clusters with endpoints) and
// must show as JSON (/config). TLS sections name files: the loader reads only regular files of
// sane size, so a path such as /dev/zero cannot hang it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "tether/proxy/config.hpp"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "config_fuzz: %s\n", what);
    std::abort();
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 64 * 1024) {
    return 0; // configs are small; larger inputs only slow the search
  }
  const std::string_view yaml{reinterpret_cast<const char*>(data), size};
  const auto loaded = tether::proxy::load_config(yaml, "fuzz.yaml");
  check(loaded.value.has_value() == loaded.errors.empty(), "both a config and errors, or neither");
  for (const auto& e : loaded.errors) {
    check(e.rfind("fuzz.yaml:", 0) == 0, "an error that does not say where");
  }
  if (const auto& c = loaded.value) {
    check(!c->listeners.empty() && !c->routes.empty() && !c->clusters.empty(),
          "a config without listeners, routes or clusters");
    for (const auto& r : c->routes) {
      check(c->find_cluster(r.cluster) != nullptr, "a route to a cluster that does not exist");
    }
    for (const auto& cl : c->clusters) {
      check(!cl.endpoints.empty(), "a cluster without endpoints");
    }
    check(!tether::proxy::to_json(*c).empty(), "a config that does not show as JSON");
  }
  return 0;
}
