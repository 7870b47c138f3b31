// `kiln serve`: the local store as an HTTP binary cache
// (store/cache/cache_server answers, store/io/http_server listens).
#include "store/cache/cache_server.hpp"
#include "store/io/error.hpp"
#include "tools/kiln/commands.hpp"
#include "tools/kiln/store_cli.hpp"

#include <csignal>
#include <iostream>
#include <sys/signalfd.h>

namespace kiln::cmd {

namespace {

const char* serve_usage = R"(Usage: kiln serve --listen ADDR:PORT [--store STORE] [OPTIONS]

Serves a local store as a binary cache over HTTP, for Nix ('substituters =
http://ADDR:PORT', 'nix copy --from http://ADDR:PORT') and for Kiln. Every
answer is made from the store as it is when asked: nix-cache-info,
HASH.narinfo (signed on the fly with --secret-key), the NARs (compressed on
the fly with zstd, or plain with byte ranges), HASH.ls listings and
log/DRV build logs. Each connection reads the store on its own database
connection, so serving never waits for builds. Runs in the foreground until
SIGINT or SIGTERM.

Options:
  --listen ADDR:PORT     where to listen (IPv4; port 0 picks a free one; the
                         address is printed on stderr once listening)
  --store STORE          the local store to serve (local, /DIR, local:DIR, ...)
  --secret-key FILE      sign every narinfo with this key (Nix's key format)
  --compression METHOD   zstd (default, level 1) or none
  --long-distance        zstd with long-distance matching: smaller NARs where
                         files repeat far apart, but slower to make (measured
                         here: 35% on binaries, 3x on incompressible data)
  --priority N           the Priority nix-cache-info announces (default 30)
)";

} // namespace

int serve_command(const std::vector<std::string>& args) {
  auto a = cli::parse(args,
                      {store_option, {"--listen", true}, {"--secret-key", true}, {"--compression", true},
                       {"--priority", true}, {"--long-distance"}},
                      serve_usage);
  cli::expect_positional(a, 0, 0, "");
  if (!a.values.count("--listen"))
    throw cli::usage_error("missing --listen ADDR:PORT");
  cache_server_options options;
  options.compression = a.value_or("--compression", "zstd");
  if (options.compression != "zstd" && options.compression != "none")
    throw cli::usage_error("--compression: '" + options.compression + "' is not zstd or none");
  options.long_distance = a.has("--long-distance");
  if (options.long_distance && options.compression != "zstd")
    throw cli::usage_error("--long-distance is for zstd compression");
  if (a.values.count("--secret-key"))
    options.key = read_secret_key_file(a.values.at("--secret-key"));
  if (a.values.count("--priority"))
    options.priority = static_cast<int>(parse_size_setting(a.values.at("--priority"), "--priority"));
  // The store is opened here first, so a wrong --store fails before listening.
  auto first = open_store(a);
  store_layout layout = first->layout();

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  unique_fd stop(::signalfd(-1, &signals, SFD_CLOEXEC));
  if (!stop)
    throw_errno("making a signalfd");

  http_server server(a.values.at("--listen"), [&](const http_request& req) {
    // One store connection per connection thread.
    thread_local std::unique_ptr<local_store> store;
    if (!store)
      store = std::make_unique<local_store>(layout);
    return answer_cache_request(*store, options, req);
  });
  std::string listen = a.values.at("--listen");
  std::cerr << "kiln serve: serving the store as a binary cache on http://"
            << listen.substr(0, listen.rfind(':')) << ":" << server.port() << std::endl;
  server.run(stop.get());
  std::cerr << "kiln serve: stopped" << std::endl;
  std::_Exit(0); // connection threads may still be running: do not unwind under them
}

} // namespace kiln::cmd
