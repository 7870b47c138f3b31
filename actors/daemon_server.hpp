// kilnd's server: the supervisor, the listening socket, one session actor
// per connection (on a thread of its own, daemon_session.hpp), the engine
// they share, and the signals: SIGTERM/SIGINT stop it (builds of connected
// clients cancelled), SIGHUP reloads the configuration for new
// connections. No CAF in this header.
#pragma once

#include "store/format/settings.hpp"
#include "store/local/store_layout.hpp"

#include <functional>
#include <string>

namespace kiln::daemon {

struct server_options {
  store_layout layout;
  std::string socket_path;  // ignored when socket activation hands a socket over
  std::string version;      // what `nix store ping` shows
  // Reads the configuration (at start and on SIGHUP); throws on a bad one.
  std::function<settings()> load_config;
};

// Serves until SIGTERM or SIGINT; returns the exit status.
int run_server(const server_options& options);
// Serves one trusted client on stdin and stdout (nix-daemon --stdio), until
// it closes them.
int run_stdio(const server_options& options);

} // namespace kiln::daemon
