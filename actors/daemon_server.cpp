// kilnd's actors around the engine: the supervisor at the root
// (daemon_supervisor.cpp), the listener, which accepts connections and
// decides trust from the peer's credentials, and one session actor per
// connection. Signals arrive through a signalfd beside the listening socket.
#include "actors/daemon_server.hpp"

#include "actors/actors.hpp"
#include "actors/build_settings.hpp"
#include "actors/daemon_session.hpp"
#include "actors/detached_builds.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"
#include "store/io/unix_socket.hpp"
#include "store/local/temp_roots.hpp"

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <poll.h>
#include <pwd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <cstring>
#include <thread>
#include <unistd.h>

namespace kiln::daemon {

namespace {

peer_info peer_of(int fd) {
  peer_info p;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return p;
  p.known = true;
  p.uid = cred.uid;
  p.gid = cred.gid;
  p.pid = cred.pid;
  if (passwd* pw = ::getpwuid(cred.uid))
    p.user = pw->pw_name;
  else
    p.user = std::to_string(cred.uid);
  return p;
}

// systemd socket activation: LISTEN_PID is us and LISTEN_FDS is 1 (fd 3).
int activated_socket() {
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (!pid || !fds || std::atol(pid) != ::getpid() || std::string(fds) != "1")
    return -1;
  return 3;
}

} // namespace

namespace {

// max-jobs of kilnd's own configuration bounds all clients' builds
// together; a client's own max-jobs bounds its builds within that.
uint32_t daemon_slots(const settings& config) {
  const std::string& jobs = config.get("max-jobs");
  if (jobs == "auto")
    return std::max(1u, std::thread::hardware_concurrency());
  return static_cast<uint32_t>(std::max<uint64_t>(1, config.get_number("max-jobs")));
}

// kiln-worker processes beside this kilnd's executable, `workers` of them.
worker_options daemon_workers(const settings& config, const store_layout& layout) {
  worker_options w;
  const std::string& n = config.get("workers");
  w.count = n == "auto" ? std::max(1u, std::thread::hardware_concurrency())
                        : static_cast<uint32_t>(config.get_number("workers"));
  char self[4096];
  ssize_t len = ::readlink("/proc/self/exe", self, sizeof self - 1);
  std::string dir = len > 0 ? split_path(std::string(self, static_cast<std::size_t>(len))).first : ".";
  const char* program = std::getenv("KILN_WORKER_PROGRAM");
  w.program = program && *program ? program : dir + "/kiln-worker";
  w.build_dir_parent = config.get("build-dir");
  w.temproots_dir = layout.temproots_dir();
  w.registry_dir = layout.kiln_dir() + "/workers";
  return w;
}

// What every way of serving has: the configuration and one engine.
struct daemon_core {
  explicit daemon_core(const server_options& options) {
    ctx.layout = options.layout;
    ctx.config = options.load_config();
    // A killed kilnd's temp roots (its sessions', its workers') would keep
    // paths from the collector until the next collection noticed.
    try {
      remove_stale_temp_roots(ctx.layout.temproots_dir());
    } catch (const std::exception& e) {
      std::cerr << "kilnd: warning: " << e.what() << "\n";
    }
    ctx.version = options.version;
    engine = std::make_unique<engine_host>(daemon_slots(ctx.config), daemon_workers(ctx.config, ctx.layout));
    ctx.engine = engine.get();
  }
  // The durable queue of detached builds (the socket's kilnd only): what
  // was not done when kilnd last stopped runs again now.
  void keep_detached_builds() {
    detached = std::make_unique<detached_builds>(ctx.layout, *engine, [config = ctx.config] { return config; });
    ctx.detached = detached.get();
  }
  daemon_context ctx;
  std::unique_ptr<engine_host> engine;
  std::unique_ptr<detached_builds> detached; // before the engine goes
};

} // namespace

int run_stdio(const server_options& options) {
  daemon_core core(options);
  serve_stdio(core.ctx, core.ctx.config);
  return 0;
}

namespace {

// A session actor: one connection served on a thread of its own (a
// blocking actor, so its socket I/O blocks nobody else). The supervisor
// closes the descriptor once it has ended.
void session_actor(caf::blocking_actor*, int fd, daemon_context* ctx, settings config, peer_info peer,
                   bool trusted) {
  serve_connection(fd, *ctx, config, peer, trusted);
}

// The listener, a blocking actor too: waits on the socket and the signals;
// accepts, decides trust, and spawns a session actor per connection for the
// supervisor to watch. SIGHUP reloads the configuration for new sessions;
// SIGTERM or SIGINT closes the socket and has the supervisor stop.
void listener(caf::blocking_actor* self, int listen_fd, int signal_fd, const server_options* options,
              daemon_context* ctx, supervisor_actor supervisor) {
  unique_fd listening(listen_fd);
  for (;;) {
    pollfd fds[2] = {{listening.get(), POLLIN, 0}, {signal_fd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      std::cerr << "kilnd: waiting for connections: " << std::strerror(errno) << '\n';
      self->send(supervisor, stop_atom::value);
      return;
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info{};
      if (::read(signal_fd, &info, sizeof info) != sizeof info)
        continue;
      if (info.ssi_signo == SIGHUP) {
        try {
          ctx->config = options->load_config();
          std::cerr << "kilnd: configuration reloaded (for new connections)\n";
        } catch (const std::exception& e) {
          std::cerr << "kilnd: configuration not reloaded: " << e.what() << '\n';
        }
        continue;
      }
      std::cerr << "kilnd: stopping (signal " << info.ssi_signo << ")\n";
      listening.reset();
      if (options->socket_path.size() && activated_socket() < 0)
        ::unlink(options->socket_path.c_str());
      self->send(supervisor, stop_atom::value);
      return;
    }
    if (!(fds[0].revents & POLLIN))
      continue;
    int client = ::accept4(listening.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0)
      continue; // the client gave up already, or no descriptors left for now
    peer_info peer = peer_of(client);
    const settings& config = ctx->config;
    bool trusted = peer.known && user_matches(peer, config.get("trusted-users"));
    if (!trusted && !(peer.known && user_matches(peer, config.get("allowed-users")))) {
      std::cerr << "kilnd: user '" << peer.user << "' is not allowed to connect (allowed-users)\n";
      ::close(client);
      continue;
    }
    std::cerr << "kilnd: accepted connection from pid " << peer.pid << ", user " << peer.user
              << (trusted ? " (trusted)" : "") << '\n';
    auto session = self->spawn(session_actor, client, ctx, config, peer, trusted);
    self->send(supervisor, session_atom::value, session, client);
  }
}

} // namespace

int run_server(const server_options& options) {
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP})
    sigaddset(&signals, s);
  // Blocked before any thread starts, so every thread inherits the mask and
  // only the signalfd sees them (builders unblock them before exec).
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  unique_fd sigfd(::signalfd(-1, &signals, SFD_CLOEXEC));
  if (!sigfd)
    throw_errno("making a signalfd");

  daemon_core core(options);

  unique_fd listening;
  if (int fd = activated_socket(); fd >= 0) {
    listening.reset(fd);
    std::cerr << "kilnd: serving the socket systemd handed over\n";
  } else {
    make_directories(split_path(options.socket_path).first);
    listening = listen_unix(options.socket_path);
    std::cerr << "kilnd: listening on '" << options.socket_path << "'\n";
  }
  core.keep_detached_builds();

  caf::actor_system& sys = core.engine->system();
  supervisor_timing timing;
  timing.drain = std::chrono::seconds(core.ctx.config.get_number("shutdown-timeout"));
  timing.cancel_builds = core.ctx.config.get_bool("shutdown-cancels-builds");
  auto supervisor = spawn_supervisor(sys, timing, &core.ctx.stopping);
  caf::scoped_actor self{sys};
  self->monitor(supervisor);
  sys.spawn(listener, listening.release(), sigfd.get(), &options, &core.ctx, supervisor);
  bool clean = false;
  self->receive([&](const caf::down_msg& dm) { clean = !dm.reason || dm.reason == caf::exit_reason::normal; });
  // The workers end before kilnd, cleanly: the end of kilnd's links would
  // end them too, but not one that is wedged, and one that is stopped only
  // by the kernel's SIGHUP to its orphaned group, with its build
  // directories left behind.
  core.engine->stop_workers();
  // Sessions still running at the deadline hold references into this
  // frame: leave without unwinding it.
  std::cerr.flush();
  std::_Exit(clean ? 0 : 1);
}

} // namespace kiln::daemon
