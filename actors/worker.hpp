// kiln-worker: a process hosting builder actors for kilnd (design.md,
// "Process model"). kilnd starts it with one end of a socketpair as fd 3
// and links to it by CAF's BASP over that socket: no port listens anywhere,
// and only kilnd holds the other end. No CAF in this header.
#pragma once

#include <chrono>
#include <string>

namespace caf {
class actor_system_config;
}

namespace kiln {

// The heartbeat of a worker link, the same on both ends: a process that
// stops answering (SIGSTOP, a hang) is taken for lost after `link_timeout`.
constexpr std::chrono::milliseconds link_heartbeat{250};
constexpr std::chrono::milliseconds link_timeout{1500};
// How long a worker has, once kilnd cuts its link at a stop, to kill its
// builds, remove their directories and exit, before kilnd kills it.
constexpr std::chrono::seconds worker_stop_deadline{5};

// What both ends of a worker link load and set on their actor system:
// the middleman, the heartbeat above, and how messages from the link are
// taken in (actors/worker_main.cpp).
void load_worker_link(caf::actor_system_config& cfg);

// Serves kilnd on the socket `link_fd` until kilnd goes (its builds are then
// killed) or never says hello; build directories go under `build_dir_parent`
// ("" = $TMPDIR or /tmp). Returns the exit status.
int run_worker(int link_fd, const std::string& build_dir_parent);

} // namespace kiln
