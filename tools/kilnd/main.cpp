// kilnd: the long-running build server that Nix clients use unchanged.
// Reads the environment and the configuration, then hands over to the
// server (actors/daemon_server.hpp).
#include "actors/daemon_server.hpp"
#include "sandbox/system_features.hpp"
#include "store/io/error.hpp"
#include "store/io/file_ops.hpp"
#include "tools/kiln/cli.hpp"

#include <csignal>
#include <cstdlib>
#include <grp.h>
#include <iostream>
#include <unistd.h>

namespace {

const char* usage = R"(Usage: kilnd [--store STORE] [--socket PATH | --stdio] [--option NAME VALUE]...

kilnd is Kiln's build daemon: it serves a Nix store to Nix 2.8's clients
(nix-build, nix-store, nix) over the daemon socket, speaking Nix's worker
protocol, and builds on Kiln's engine. It runs in the foreground and logs to
stderr, as nix-daemon does.

Options:
  --store STORE        the store to serve: 'local' (default: the system's, at /),
                       or a root directory as /DIR, local?root=DIR or local:DIR
  --socket PATH        where to listen (default: $NIX_DAEMON_SOCKET_PATH, else
                       <state>/daemon-socket/socket, /nix/var/nix/daemon-socket/socket)
  --option NAME VALUE  a setting, after the configuration files
  --stdio              serve one client on stdin and stdout, trusted, and exit
                       when it is done (what `ssh-ng://` runs remotely, as
                       nix-daemon --stdio)
  --version            print the version

Configuration, read at start and again on SIGHUP (for new connections):
  $NIX_CONF_DIR/nix.conf (default /etc/nix/nix.conf) by Nix's rules: settings
  Kiln does not know are warnings, extra-NAME appends, include and !include;
  then $KILN_CONF (default /etc/kiln/kiln.conf, if present); then --option.
  trusted-users (default root) and allowed-users (default *) decide who may
  connect and who is trusted, as nix-daemon decides it. Build logs are written
  bzip2-compressed by default, where `nix log` reads them. max-jobs here is the
  number of builds at once for all clients together, taken in turn between
  them; a client's own max-jobs only lowers its share.

Builds run in `workers` kiln-worker processes (default auto: one per core;
0: in kilnd's own process), linked to kilnd by a socketpair each (no port
listens). A worker that dies, or stops answering for 1.5 s, is killed and
started again after a backoff (100 ms, doubling up to 30 s); its builds are
tried again on another worker up to max-build-retries times (default 2),
as the cause was not the build. A worker that fails 5 starts in a row is
not started again, and kilnd says so on stderr. Workers are recorded in
<state>/../kiln/workers: one that a killed kilnd left behind, wedged, is
killed when kilnd next starts.

Detached builds (`kiln build --detach`) are kept in a durable queue,
<state>/../kiln/queue.sqlite (nix/var/kiln): they run with kilnd's own
settings, apart from any connection, and their results stay there for
`kiln build --attach ID` and `kiln status ID`. Those not done when kilnd
stopped or was killed run again when it starts.

Environment: NIX_DAEMON_SOCKET_PATH; NIX_STATE_DIR and NIX_LOG_DIR may name a
store's root as Nix lays it out (DIR/nix/var/nix, DIR/nix/var/log/nix); store
paths are always under /nix/store (NIX_STORE_DIR may only say that).
KILN_WORKER_PROGRAM: the kiln-worker to start (default: beside kilnd).
Socket activation: with LISTEN_FDS=1 (systemd), the socket on fd 3 is served.

Taking over from nix-daemon:
  systemctl stop nix-daemon.socket nix-daemon.service
  kilnd                      # or install tools/kilnd/kilnd.{socket,service}
The store, its database and logs stay where they are: kilnd uses Nix's.

SIGTERM or SIGINT stop it: no new connections; builds under way finish and
their clients get their results, for up to shutdown-timeout seconds (default
60), then every client is hung up on and what still builds is cancelled
(shutdown-cancels-builds = true: at once); then the workers end (one that has
not within 5 s is killed, with its builds). SIGHUP reloads the configuration.
)";

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// The store's root from --store, or from the NIX_* variables Nix honours.
kiln::store_layout layout_from(const kiln::cli::parsed_args& a) {
  if (a.values.count("--store") && a.values.at("--store") != "local")
    return kiln::store_layout::from_uri(a.values.at("--store"));
  if (env_or("NIX_STORE_DIR", "/nix/store") != "/nix/store")
    throw kiln::error("NIX_STORE_DIR is '" + env_or("NIX_STORE_DIR", "") +
                      "': kilnd serves stores whose paths are under /nix/store only");
  kiln::store_layout layout{""};
  std::string state = env_or("NIX_STATE_DIR", "/nix/var/nix");
  const std::string suffix = "/nix/var/nix";
  if (state.size() < suffix.size() || state.compare(state.size() - suffix.size(), suffix.size(), suffix) != 0)
    throw kiln::error("NIX_STATE_DIR is '" + state + "': kilnd needs a store laid out as Nix's, DIR/nix/var/nix");
  layout.root = state.substr(0, state.size() - suffix.size());
  std::string logs = env_or("NIX_LOG_DIR", layout.root + "/nix/var/log/nix");
  if (logs != layout.root + "/nix/var/log/nix")
    throw kiln::error("NIX_LOG_DIR is '" + logs + "': kilnd keeps logs beside the state, in " + layout.root +
                      "/nix/var/log/nix");
  return layout;
}

kiln::settings load_config(const std::vector<std::pair<std::string, std::string>>& options) {
  kiln::settings s;
  s.set("system-features", kiln::sandbox::default_system_features(::access("/dev/kvm", F_OK) == 0), "the host");
  s.set("compress-build-log", "bzip2", "kilnd"); // where and how `nix log` reads it
  s.set("log-lines", "10", "kilnd");               // Nix 2.8's daemon's
  if (::getuid() == 0 && ::getgrnam("nixbld"))
    s.set("build-users-group", "nixbld", "kilnd"); // Nix's default for a root daemon
  auto read = [](const std::string& path) -> std::optional<std::string> {
    if (::access(path.c_str(), F_OK) != 0)
      return std::nullopt;
    return kiln::read_whole_file(path, 1u << 20, "configuration file");
  };
  std::string nix_conf = env_or("NIX_CONF_DIR", "/etc/nix") + "/nix.conf";
  if (auto text = read(nix_conf))
    s.apply_nix_config(*text, nix_conf, read,
                       [](const std::string& w) { std::cerr << "kilnd: warning: " << w << '\n'; });
  const char* env = std::getenv("KILN_CONF");
  std::string conf = env ? env : "/etc/kiln/kiln.conf";
  if (auto text = read(conf))
    s.apply_config(*text, conf);
  else if (env)
    throw kiln::error("KILN_CONF names '" + conf + "', which does not exist");
  for (auto& [name, value] : options)
    s.set(name, value);
  return s;
}

} // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    auto a = kiln::cli::parse(
        args, {{"--store", true}, {"--socket", true}, kiln::cli::setting_option, {"--version"}, {"--stdio"}}, usage);
    if (a.has("--version")) {
      std::cout << "kilnd 0.1.0\n";
      return 0;
    }
    kiln::cli::expect_positional(a, 0, 0, "no arguments");
    kiln::daemon::server_options o;
    o.layout = layout_from(a);
    o.socket_path = a.value_or("--socket", env_or("NIX_DAEMON_SOCKET_PATH", o.layout.state_dir() + "/daemon-socket/socket"));
    o.version = "2.8.0 (kilnd 0.1.0)";
    auto pairs = a.pairs;
    o.load_config = [pairs] { return load_config(pairs); };
    o.load_config(); // a bad configuration is an error before anything listens
    return a.has("--stdio") ? kiln::daemon::run_stdio(o) : kiln::daemon::run_server(o);
  } catch (const kiln::cli::help_shown&) {
    return 0;
  } catch (const kiln::cli::usage_error& e) {
    std::cerr << "kilnd: " << e.what() << "\n(see 'kilnd --help')\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "kilnd: error: " << e.what() << '\n';
    return 1;
  }
}
