// One client connection of kilnd, served as Nix 2.8's daemon serves it
// (../shared/spec/worker-protocol.md): the handshake, then requests, each
// answered with a stderr stream and its reply. Store requests go to the
// session's own local store (its own SQLite connection, so reads never wait
// behind another session's work); builds run on the daemon's engine_host.
// Blocking I/O on the connection's socket, on the session's own thread.
// No CAF here.
#pragma once

#include "actors/engine.hpp"
#include "store/format/settings.hpp"
#include "store/local/store_layout.hpp"

#include <atomic>
#include <string>
#include <sys/types.h>

namespace kiln {
class detached_builds;
}

namespace kiln::daemon {

// Who is on the other end of the socket (SO_PEERCRED).
struct peer_info {
  bool known = false;
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  std::string user; // the uid's name, or the number
};

// What every session of one daemon shares.
struct daemon_context {
  store_layout layout;
  settings config;          // nix.conf, kiln.conf and kilnd's --option; sessions take a copy
  engine_host* engine = nullptr;
  detached_builds* detached = nullptr; // `kiln build --detach`'s requests (none for --stdio)
  // SIGTERM: 0 serving; 1 draining (sessions read no more requests, builds
  // under way finish); 2 cancelling (builds under way are cancelled).
  std::atomic<int> stopping{0};
  std::string version;      // sent to clients that ask (protocol 1.33 and later)
  std::atomic<uint64_t> next_session{1};
};

// Trust as Nix decides it: `trusted-users` and `allowed-users` hold user
// names, "@group" (the user's primary or supplementary groups) and "*".
bool user_matches(const peer_info& peer, const std::string& list);

// Serves the connection on `fd` until the client closes it or breaks the
// protocol. Never throws; a client's error ends only its connection.
// `config` is the daemon's configuration as the connection found it.
void serve_connection(int fd, daemon_context& ctx, const settings& config, const peer_info& peer, bool trusted);
// nix-daemon --stdio: one connection on stdin and stdout (what `ssh-ng://`
// runs on the remote side), trusted, as Nix's is.
void serve_stdio(daemon_context& ctx, const settings& config);

} // namespace kiln::daemon
