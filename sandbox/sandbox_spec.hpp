// What a builder runs in, as a value: made by a pure planning function from
// the derivation and the settings (tested without a single system call),
// applied by one executor in the child (builder_process.cpp) in a fixed
// order. Kiln's admin console prints these.
#pragma once

#include "store/format/derivation.hpp"
#include "store/format/settings.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace kiln::sandbox {

using kiln::sandbox_path;

enum class sandbox_mode { off, relaxed, on };
// "true", "false", "relaxed"; throws format_error naming `what` otherwise.
sandbox_mode parse_sandbox_mode(const std::string& value, const std::string& what);


// What a mount step does. The executor applies them in order; every
// target is relative to the new root, which is a fresh tmpfs.
struct mount_step {
  enum kind_t : uint8_t {
    dir,       // mkdir target (mode)
    bind,      // bind source (a host path) on target; its mount point is
               // made first (a directory or an empty file as source is)
    bind_ro,   // the same, then remounted read-only
    tmpfs,     // a fresh tmpfs on target (options in `source`)
    proc,      // a fresh /proc for the build's PID namespace
    devpts,    // a private devpts instance (ptmx at /dev/pts/ptmx)
    symlink,   // target -> source
    file,      // target with contents `source` (mode)
  };
  uint8_t kind = dir;
  std::string source, target;
  uint32_t mode = 0755;
  bool optional = false;   // bind: a missing source is skipped
  bool source_is_dir = true; // bind: decided by the planner's caller (host stat)
};

struct cgroup_limits {
  uint64_t memory_max = 0; // bytes, 0 = none
  uint64_t pids_max = 0;   // tasks, 0 = none
  uint32_t cpu_max_percent = 0; // of one CPU (250 = 2.5 CPUs), 0 = none
  // The default process limit (build-pids-max = auto): set where a pids
  // group can enforce it, never a reason to refuse a build where none can.
  uint64_t pids_default = 0;
};

// build-pids-max = auto: far above what real builds run at once (a -j128
// compile is a few hundred), low enough that a fork bomb stops there
// instead of taking the host down.
constexpr uint64_t default_build_pids_max = 2048;

// The whole description of one builder run.
struct sandbox_spec {
  // The process.
  std::string program;            // the derivation's builder (or kiln-builtin)
  std::vector<std::string> args;  // argv[1..]
  std::map<std::string, std::string> env;
  std::string cwd;                // inside the sandbox: "/build"
  std::string build_dir;          // on the host: the private build directory

  // Where the store is, outside and inside.
  std::string store_dir = "/nix/store";
  std::string store_real_dir;
  // Without isolation, check builds of existing outputs write through an
  // overlay (upper and work directories) that hides those outputs.
  std::string overlay_upper, overlay_work;
  std::vector<std::string> overlay_hide;

  // Isolation. `isolated` false: only a private mount namespace with the
  // store bound at store_dir (sandbox = false, or __noChroot when relaxed).
  bool isolated = false;
  bool network = false;      // keep the host's network (fixed outputs only)
  std::string hostname = "localhost";
  std::string domainname = "(none)";
  // The builder's uid and gid inside and the host ids they map to. A host
  // uid of 0 for an unprivileged daemon means "the daemon's own".
  uint32_t sandbox_uid = 1000, sandbox_gid = 100;
  uint32_t host_uid = 0, host_gid = 0;
  // The store as the builder sees it: a writable directory on the store's
  // file system (outputs appear here and move into the store afterwards)
  // with each input path bound read-only into it.
  std::string chroot_store_dir;
  std::string root_dir;                 // an empty host directory: the new root's mount point
  std::vector<mount_step> mounts;       // applied in order on the new root
  unsigned long personality = 0;        // e.g. PER_LINUX32 for i686-linux
  bool seccomp = true;                  // the setuid/xattr/io_uring filter
  cgroup_limits limits;
  // RLIMIT_FSIZE (build-size-max): no file of the build may grow past it;
  // the builder watches the total (actors/builder.cpp). 0 = none.
  uint64_t file_size_max = 0;
};

// What the planner needs from settings.
struct sandbox_settings {
  sandbox_mode mode = sandbox_mode::on;
  std::vector<sandbox_path> paths;          // sandbox-paths + extra-sandbox-paths + pre-build-hook's
  std::vector<std::string> allowed_impure_host_deps;
  cgroup_limits limits;
  std::string build_dir_inside = "/build";
};

// What the planner needs from the host, asked through functions so the
// planner stays pure: whether a host path is a directory (nullopt: missing).
struct host_view {
  std::function<std::optional<bool>(const std::string&)> is_directory;
};

// Why a derivation may not be built as asked (e.g. __noChroot under
// sandbox = true); the goal fails with this text.
class sandbox_refused : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// Whether `drv` runs isolated under `mode`: not when off, nor for a
// __noChroot derivation when relaxed; __noChroot under "on" throws
// sandbox_refused.
bool sandbox_isolates(const derivation& drv, sandbox_mode mode);

// Plans the isolation part of `spec` (program, args, env, store dirs and
// build_dir already filled): namespaces, mounts, /etc files, limits.
// `input_closure` is the closure of the derivation's inputs (store paths).
// Throws sandbox_refused or format_error.
void plan_sandbox(sandbox_spec& spec, const derivation& drv, const std::vector<std::string>& input_closure,
                  const sandbox_settings& settings, const host_view& host);

// For each mount step, whether the directory its target goes in is there
// before the step runs: the new root itself, or a directory an earlier step
// made or bound. The child walks and makes the parents of the other
// targets only (most steps need no walk: the planner makes parents first).
std::vector<bool> parents_made_earlier(const std::vector<mount_step>& mounts);

// "/etc/passwd" etc. as the builder sees them.
std::string sandbox_passwd(const sandbox_spec& spec, const std::string& build_dir_inside);
std::string sandbox_group(const sandbox_spec& spec);

// The pre-build-hook's answer: "extra-sandbox-paths" (or the older
// "extra-chroot-dirs") followed by one path spec per line up to an empty
// line. Throws format_error on anything else, naming the line.
std::vector<sandbox_path> parse_pre_build_hook_output(const std::string& text);

// A derivation attribute that is a list of strings (space-separated in the
// environment, a JSON array under __structuredAttrs), or a flag.
std::vector<std::string> derivation_string_list(const derivation& drv, const std::string& name);
bool derivation_flag(const derivation& drv, const std::string& name);

} // namespace kiln::sandbox
