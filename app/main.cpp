// berth's entry point: `berth [run] --configFile=...`, `berth check ...`, `berth version`.
#include <csignal>
#include <iostream>
#include <string>
#include <vector>

#include "app/admin_cli.h"
#include "app/server.h"
#include "app/takeover.h"
#include "base/log.h"
#include "base/memory.h"
#include "config/static_config.h"

namespace {

constexpr const char* kUsage =
    "usage: berth [--configFile=berth.yml] [--entryPoints.<name>.address=:8080 ...]\n"
    "       berth --takeover [options]           start in place of the berth serving the same entry\n"
    "                                            points (hot upgrade; SIGUSR2 to it does the same)\n"
    "       berth check --configFile=berth.yml   validate static and dynamic config\n"
    "       berth version                        print the version\n"
    "Every static option is also a flag (keys are case-insensitive), as with Traefik.\n";

}  // namespace

int main(int argc, char** argv) {
  // A write to a peer that has gone raises SIGPIPE unless sent with MSG_NOSIGNAL, as Asio and the
  // TLS BIO send; berth wants EPIPE from every other write too (a log written to a closed pipe).
  std::signal(SIGPIPE, SIG_IGN);
  berth::app::set_command_line(argc, argv);
  std::vector<std::string> args(argv + 1, argv + argc);
  // --takeover (hot upgrade) is a way to start, not a static option.
  const bool takeover = std::erase(args, std::string("--takeover")) > 0;
  std::string verb;
  if (!args.empty() && !args[0].empty() && args[0][0] != '-') {
    verb = args[0];
    args.erase(args.begin());
  }
  if (verb == "version" || (args.size() == 1 && args[0] == "--version")) {
    std::cout << "berth version " << BERTH_VERSION << "\nallocator: " << berth::allocator_name() << "\n";
    return 0;
  }
  if (verb == "help" || (!args.empty() && (args[0] == "--help" || args[0] == "-h"))) {
    std::cout << kUsage << berth::app::kAdminUsage;
    return 0;
  }
  if (berth::app::is_admin_command(verb)) return berth::app::run_admin_command(verb, args);
  if (!verb.empty() && verb != "check" && verb != "run") {
    std::cerr << "berth: unknown command \"" << verb << "\"\n" << kUsage;
    return 2;
  }
  auto loaded = berth::config::load_static_config(args);
  if (verb == "check") {
    for (const auto& e : loaded.errors) std::cout << e.to_string() << "\n";
    if (!loaded.errors.empty()) {
      std::cout << loaded.errors.size() << " problem(s) found\n";
      return 1;
    }
    return berth::app::check_config(loaded.config);
  }
  if (!loaded.errors.empty()) {
    for (const auto& e : loaded.errors) std::cerr << "berth: " << e.to_string() << "\n";
    std::cerr << "berth: static configuration has " << loaded.errors.size() << " problem(s); not starting\n";
    return 2;
  }
  berth::log::Level level;
  if (berth::log::parse_level(loaded.config.log_level, level)) berth::log::g_level = level;
  berth::log::Format format = berth::log::Format::kCommon;
  berth::log::parse_format(loaded.config.log_format, format);
  if (auto opened = berth::log::open_output(format, loaded.config.log_file_path); !opened) {
    std::cerr << "berth: log.filePath: " << opened.error().to_string() << "\n";
    return 2;
  }
  return berth::app::run_server(loaded.config, takeover);
}
