// kiln: the command-line entry point. Only dispatch and error reporting
// live here; each command group has its own file.
#include "store/io/error.hpp"
#include "tools/kiln/cli.hpp"
#include "tools/kiln/commands.hpp"

#include <csignal>
#include <iostream>

namespace {

const char* usage = R"(Usage: kiln COMMAND [ARGS...]

Kiln realises Nix derivations. Commands:
  nar     dump, restore and list NAR archives (byte-identical to Nix)
  hash    hash files and trees, convert between hash text forms
  drv     show a derivation, compute its store path and output paths
  key     make and inspect Ed25519 signing keys (Nix's key file format)
  store   add to, query and dump a local store laid out as Nix's (--store local:DIR)
  build   realise derivations: build them (and their inputs) in the local store
  log     print the build log of a derivation or output path
  status  what kilnd knows of a detached build (kiln build --detach)
  copy    copy paths and their closures between stores and binary caches
  serve   serve the local store as an HTTP binary cache

Run 'kiln COMMAND --help' for a command's options.
Errors go to stderr and give a non-zero exit status.
)";

} // namespace

int main(int argc, char** argv) {
  // A closed pipe (kiln nar dump | head) is an error to report, not a signal death.
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "--version") {
    std::cout << "kiln 0.1.0\n";
    return 0;
  }
  try {
    return kiln::cli::dispatch("kiln", args,
                               {{"nar", "NAR archives", kiln::cmd::nar},
                                {"hash", "hashes", kiln::cmd::hash},
                                {"drv", "derivations", kiln::cmd::drv},
                                {"key", "signing keys", kiln::cmd::key},
                                {"store", "the local store", kiln::cmd::store},
                                {"build", "build derivations", kiln::cmd::build_command},
                                {"log", "build logs", kiln::cmd::log_command},
                                {"status", "a detached build's state (kilnd)", kiln::cmd::status_command},
                                {"copy", "copy between stores", kiln::cmd::copy_command},
                                {"serve", "serve a binary cache", kiln::cmd::serve_command}},
                               usage);
  } catch (const kiln::cli::help_shown&) {
    return 0;
  } catch (const kiln::cli::usage_error& e) {
    std::cerr << "kiln: " << e.what() << "\n(see '" << (e.command.empty() ? "kiln" : e.command) << " --help')\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "kiln: error: " << e.what() << '\n';
    return 1;
  }
}
