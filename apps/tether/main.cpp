// The `tether` command: parses flags and hands over to a library. Nothing worth testing lives here.
#include <cstdint>
#include <iostream>

#include <CLI/CLI.hpp>

#include "tether/core/random.hpp"
#include "tether/demo/retry_storm_demo.hpp"
#include "tether/proxy/config.hpp"

#include "chaos_command.hpp"
#include "proxy_command.hpp"

#ifndef TETHER_VERSION
#define TETHER_VERSION "unknown"
#endif

namespace {

// Exit codes: 0 success, 1 failure while running, 2 usage error (as BSD sysexits' EX_USAGE is
// too specific; 2 is what shells and most CLIs use for bad usage).
constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"tether: connection management for C++ services and the fleets they run in.\n"
               "Pools, retries with backoff and budgets, circuit breakers, outlier ejection\n"
               "and Prometheus metrics, as a library and as this command.",
               "tether"};
  app.set_version_flag("-V,--version", "tether " TETHER_VERSION);
  app.require_subcommand(0, 1);

  auto* demo = app.add_subcommand(
      "demo", "Show the resilience layer at work: a simulated retry storm, naive vs tether");
  std::uint64_t seed = 1;
  bool metrics = false;
  demo->add_option("--seed", seed, "Seed of the simulation's random source")->capture_default_str();
  demo->add_flag("--metrics", metrics, "Print the run's Prometheus exposition at the end");

  auto* proxy = app.add_subcommand(
      "proxy",
      "Run the HTTP reverse proxy (with no -c: the built-in config and its demo upstreams)");
  std::string proxy_config_file;
  std::uint32_t proxy_workers = 0;
  proxy->add_option("-c,--config", proxy_config_file, "YAML configuration file");
  proxy->add_option("--workers", proxy_workers, "Worker threads (overrides the config; 0: cores)");
  bool proxy_take_over = false;
  proxy->add_flag("--take-over", proxy_take_over,
                  "Take the listening sockets over from the tether answering on the config's "
                  "admin.upgrade_socket, which then drains: an upgrade that refuses no connection");

  auto* validate = app.add_subcommand("validate", "Check a proxy configuration file and say "
                                                  "every problem with file:line:column");
  std::string validate_file;
  validate->add_option("-c,--config", validate_file, "YAML configuration file")->required();

  auto* chaos = app.add_subcommand(
      "chaos", "Run a Toxiproxy-compatible fault-injection proxy (same REST API, same toxics)");
  tether::app::chaos_command_options chaos_options;
  std::uint64_t chaos_seed = 0;
  chaos->add_option("--host", chaos_options.host, "Address of the REST API")->capture_default_str();
  chaos->add_option("--port", chaos_options.port, "Port of the REST API")->capture_default_str();
  chaos
      ->add_option("--config", chaos_options.config_file,
                   "JSON file with proxies to create at start (the body /populate takes)")
      ->check(CLI::ExistingFile);
  auto* chaos_seed_option =
      chaos->add_option("--seed", chaos_seed, "Seed for toxicity, jitter and slicing");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return exit_ok;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return exit_ok;
  } catch (const CLI::CallForVersion& e) {
    std::cout << e.what() << '\n';
    return exit_ok;
  } catch (const CLI::ParseError& e) {
    std::cerr << "tether: " << e.what() << "\nRun 'tether --help' for usage.\n";
    return exit_usage;
  }

  if (app.get_subcommands().empty()) {
    std::cerr << "tether: a subcommand is required\n\n" << app.help();
    return exit_usage;
  }
  try {
    if (demo->parsed()) {
      tether::demo::run_resilience_demo(std::cout, seed, metrics);
    }
    if (validate->parsed()) {
      const auto loaded = tether::proxy::load_config_file(validate_file);
      for (const auto& e : loaded.errors) {
        std::cerr << e << '\n';
      }
      if (!loaded.value) {
        std::cerr << "tether validate: " << loaded.errors.size() << " problem"
                  << (loaded.errors.size() == 1 ? "" : "s") << " in " << validate_file << '\n';
        return exit_usage;
      }
      std::cout << validate_file << ": ok\n";
      return exit_ok;
    }
    if (proxy->parsed()) {
      const bool builtin = proxy_config_file.empty();
      if (builtin && proxy_take_over) {
        std::cerr << "tether proxy: --take-over needs -c: a config whose admin.upgrade_socket "
                     "names the running tether's upgrade socket\n";
        return exit_usage;
      }
      // What the proxy starts with, and what SIGHUP and POST /reload read again.
      auto source = [builtin, file = proxy_config_file, workers = proxy_workers] {
        auto loaded =
            builtin ? tether::proxy::load_config(tether::proxy::default_config_yaml(), "<built-in>")
                    : tether::proxy::load_config_file(file);
        if (loaded.value && workers != 0) {
          loaded.value->workers = workers;
        }
        return loaded;
      };
      const auto loaded = source();
      if (!loaded.value) {
        for (const auto& e : loaded.errors) {
          std::cerr << e << '\n';
        }
        std::cerr << "tether proxy: not started: the configuration has " << loaded.errors.size()
                  << " problem" << (loaded.errors.size() == 1 ? "" : "s") << '\n';
        return exit_usage;
      }
      return tether::app::run_proxy(*loaded.value, std::cout, std::cerr,
                                    {builtin, source, proxy_take_over});
    }
    if (chaos->parsed()) {
      if (chaos_seed_option->count() > 0) {
        chaos_options.seed = chaos_seed;
      }
      return tether::app::run_chaos(chaos_options, std::cout, std::cerr);
    }
  } catch (const std::exception& e) {
    std::cerr << "tether: " << e.what() << '\n';
    return exit_failure;
  }
  return exit_ok;
}
