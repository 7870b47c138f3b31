// kilnd's listener: accepts connections, decides trust from the peer's
// credentials, and gives each connection a session on its own thread.
// Signals arrive through a signalfd beside the listening socket.
#include "actors/daemon_server.hpp"

#include "actors/daemon_session.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"
#include "store/io/unix_socket.hpp"

#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <poll.h>
#include <pwd.h>
#include <set>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace kiln::daemon {

namespace {

// The live sessions, so a stop can hang up on them and wait for them.
class session_table {
public:
  void add(int fd) {
    std::lock_guard<std::mutex> g(mutex_);
    fds_.insert(fd);
  }
  void remove(int fd) {
    std::lock_guard<std::mutex> g(mutex_);
    fds_.erase(fd);
    ended_.notify_all();
  }
  // Hangs up on every client (their builds are cancelled as for a client
  // that went away) and waits up to `deadline` for the sessions to end.
  bool hang_up_all(std::chrono::seconds deadline) {
    std::unique_lock<std::mutex> g(mutex_);
    for (int fd : fds_)
      ::shutdown(fd, SHUT_RDWR);
    return ended_.wait_for(g, deadline, [this] { return fds_.empty(); });
  }

private:
  std::mutex mutex_;
  std::condition_variable ended_;
  std::set<int> fds_;
};

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

// What every way of serving has: the configuration and one engine.
struct daemon_core {
  explicit daemon_core(const server_options& options) {
    ctx.layout = options.layout;
    ctx.config = options.load_config();
    ctx.version = options.version;
    engine = std::make_unique<engine_host>(daemon_slots(ctx.config));
    ctx.engine = engine.get();
  }
  daemon_context ctx;
  std::unique_ptr<engine_host> engine;
};

} // namespace

int run_stdio(const server_options& options) {
  daemon_core core(options);
  serve_stdio(core.ctx, core.ctx.config);
  return 0;
}

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
  daemon_context& ctx = core.ctx;

  unique_fd listener;
  if (int fd = activated_socket(); fd >= 0) {
    listener.reset(fd);
    std::cerr << "kilnd: serving the socket systemd handed over\n";
  } else {
    make_directories(split_path(options.socket_path).first);
    listener = listen_unix(options.socket_path);
    std::cerr << "kilnd: listening on '" << options.socket_path << "'\n";
  }

  std::mutex config_mutex;
  session_table sessions;
  for (;;) {
    pollfd fds[2] = {{listener.get(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      throw_errno("waiting for connections");
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info{};
      if (::read(sigfd.get(), &info, sizeof info) != sizeof info)
        continue;
      if (info.ssi_signo == SIGHUP) {
        try {
          settings fresh = options.load_config();
          std::lock_guard<std::mutex> g(config_mutex);
          ctx.config = std::move(fresh);
          std::cerr << "kilnd: configuration reloaded (for new connections)\n";
        } catch (const std::exception& e) {
          std::cerr << "kilnd: configuration not reloaded: " << e.what() << '\n';
        }
        continue;
      }
      std::cerr << "kilnd: stopping (signal " << info.ssi_signo << ")\n";
      listener.reset();
      if (options.socket_path.size() && activated_socket() < 0)
        ::unlink(options.socket_path.c_str());
      bool clean = sessions.hang_up_all(std::chrono::seconds(10));
      // Sessions still running hold references into this frame: leave
      // without unwinding it.
      std::cerr.flush();
      std::_Exit(clean ? 0 : 1);
    }
    if (!(fds[0].revents & POLLIN))
      continue;
    int client = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0)
      continue; // the client gave up already, or no descriptors left for now
    peer_info peer = peer_of(client);
    settings config;
    {
      std::lock_guard<std::mutex> g(config_mutex);
      config = ctx.config;
    }
    bool trusted = peer.known && user_matches(peer, config.get("trusted-users"));
    if (!trusted && !(peer.known && user_matches(peer, config.get("allowed-users")))) {
      std::cerr << "kilnd: user '" << peer.user << "' is not allowed to connect (allowed-users)\n";
      ::close(client);
      continue;
    }
    std::cerr << "kilnd: accepted connection from pid " << peer.pid << ", user " << peer.user
              << (trusted ? " (trusted)" : "") << '\n';
    sessions.add(client);
    std::thread([client, &ctx, &sessions, peer, trusted, config = std::move(config)]() mutable {
      serve_connection(client, ctx, config, peer, trusted);
      sessions.remove(client);
      ::close(client);
    }).detach();
  }
}

} // namespace kiln::daemon
