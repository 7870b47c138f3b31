#include "sandbox/sandbox_child.hpp"

#include "sandbox/network_namespaces.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::sandbox {

namespace {

// The steps the child can fail at, in the order it takes them. The child
// sends only {step, errno, mount index}; the parent words the message,
// since building strings in the child is not safe (see run_child).
enum class step : int {
  cgroup, new_session, user_namespace, uid_map, mount_namespace, private_mounts, store_mount,
  network_namespace, new_root, mount_step, hostname, loopback, pivot_root, build_user, capabilities, death_signal,
  no_new_privs, personality, core_limit, file_size_limit, seccomp, build_dir, io
};


std::string describe_mount(const mount_step& m) {
  switch (m.kind) {
  case mount_step::dir: return "creating the directory '" + m.target + "'";
  case mount_step::bind:
  case mount_step::bind_ro: return "bind-mounting '" + m.source + "' on '" + m.target + "'";
  case mount_step::tmpfs: return "mounting a tmpfs on '" + m.target + "'";
  case mount_step::proc: return "mounting /proc";
  case mount_step::devpts: return "mounting /dev/pts";
  case mount_step::symlink: return "creating the symlink '" + m.target + "'";
  case mount_step::file: return "writing '" + m.target + "'";
  }
  return "mount step";
}

} // namespace

std::string setup_failure_text(const sandbox_spec& spec, failure f) {
  std::string what;
  switch (static_cast<step>(f.at)) {
  case step::cgroup: what = "joining the build's control group"; break;
  case step::new_session: what = "creating a process group"; break;
  case step::user_namespace: what = "creating a user namespace"; break;
  case step::uid_map: what = "mapping the build user"; break;
  case step::mount_namespace: what = "creating a mount namespace"; break;
  case step::private_mounts: what = "making mounts private"; break;
  case step::store_mount:
    what = spec.overlay_upper.empty() ? "bind-mounting '" + spec.store_real_dir + "' on '" + spec.store_dir + "'"
                                      : "mounting an overlay of '" + spec.store_real_dir + "' on '" + spec.store_dir + "'";
    break;
  case step::new_root: what = "mounting the sandbox's root on '" + spec.root_dir + "'"; break;
  case step::mount_step:
    what = f.index >= 0 && static_cast<std::size_t>(f.index) < spec.mounts.size()
               ? describe_mount(spec.mounts[static_cast<std::size_t>(f.index)])
               : "preparing the sandbox";
    break;
  case step::hostname: what = "setting the host name"; break;
  case step::network_namespace: what = "joining the build's network namespace"; break;
  case step::loopback: what = "bringing up the loopback interface"; break;
  case step::pivot_root: what = "changing to the sandbox's root"; break;
  case step::build_user: what = "switching to the build user"; break;
  case step::capabilities: what = "dropping capabilities"; break;
  case step::death_signal: what = "arranging to die with the daemon"; break;
  case step::no_new_privs: what = "setting no_new_privs"; break;
  case step::personality: what = "setting the personality"; break;
  case step::core_limit: what = "disabling core dumps"; break;
  case step::file_size_limit: what = "limiting the size of files (build-size-max)"; break;
  case step::seccomp: what = "loading the system call filter"; break;
  case step::build_dir: what = "changing to the build directory '" + (spec.isolated ? spec.cwd : spec.build_dir) + "'"; break;
  case step::io: what = "redirecting the builder's output"; break;
  }
  return "while setting up the build environment: " + what + ": " + std::strerror(f.err);
}



namespace {

[[noreturn]] void fail(int report_fd, step at, int index = -1) {
  failure f{static_cast<int>(at), errno, index};
  ssize_t unused = ::write(report_fd, &f, sizeof f);
  (void)unused;
  ::_exit(1);
}

bool write_file(const char* path, const char* text, std::size_t size, int flags, mode_t mode) {
  int fd = ::open(path, flags | O_WRONLY | O_CLOEXEC, mode);
  if (fd < 0)
    return false;
  bool ok = ::write(fd, text, size) == static_cast<ssize_t>(size);
  ::close(fd);
  return ok;
}

bool write_proc_file(const char* path, const char* text) {
  return write_file(path, text, std::strlen(text), 0, 0);
}

// mkdir -p of the directories above `path`, a "./"-relative path inside
// the new root (which the child owns).
bool make_parents(char* path) {
  for (char* p = path + 2; *p; ++p) {
    if (*p != '/')
      continue;
    *p = 0;
    int r = ::mkdir(path, 0755);
    *p = '/';
    if (r != 0 && errno != EEXIST)
      return false;
  }
  return true;
}

// The flags a read-only remount must keep: in a user namespace the kernel
// refuses to clear nosuid/nodev/noexec that the source mount has.
unsigned long kept_flags(const char* target) {
  struct statfs st;
  if (::statfs(target, &st) != 0)
    return 0;
  unsigned long f = 0;
  if (st.f_flags & ST_NOSUID) f |= MS_NOSUID;
  if (st.f_flags & ST_NODEV) f |= MS_NODEV;
  if (st.f_flags & ST_NOEXEC) f |= MS_NOEXEC;
  if (st.f_flags & ST_NOATIME) f |= MS_NOATIME;
  if (st.f_flags & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (st.f_flags & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

bool parents(const child_mount& m) {
  return m.parents_exist || make_parents(m.target);
}

bool apply(const child_mount& m) {
  switch (m.kind) {
  case mount_step::dir:
    // With umask 0 a new directory has the mode; one an earlier step made
    // (as a parent, 0755) gets it now.
    if (!parents(m))
      return false;
    if (::mkdir(m.target, m.mode) == 0)
      return true;
    return errno == EEXIST && ::chmod(m.target, m.mode) == 0;
  case mount_step::bind:
  case mount_step::bind_ro: {
    if (!parents(m))
      return false;
    if (m.source_is_dir) {
      if (::mkdir(m.target, 0755) != 0 && errno != EEXIST)
        return false;
    } else {
      int fd = ::open(m.target, O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
      if (fd < 0)
        return false;
      ::close(fd);
    }
    if (::mount(m.source, m.target, nullptr, MS_BIND | MS_REC, nullptr) != 0)
      return m.optional && errno == ENOENT;
    if (m.kind == mount_step::bind_ro)
      return ::mount(nullptr, m.target, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags(m.target), nullptr) == 0;
    return true;
  }
  case mount_step::tmpfs: return ::mount("tmpfs", m.target, "tmpfs", MS_NOSUID | MS_NODEV, m.source) == 0;
  case mount_step::proc: return ::mount("proc", m.target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0;
  case mount_step::devpts: return ::mount("devpts", m.target, "devpts", MS_NOSUID | MS_NOEXEC, m.source) == 0;
  case mount_step::symlink: return parents(m) && ::symlink(m.source, m.target) == 0;
  case mount_step::file:
    return parents(m) && write_file(m.target, m.source, m.source_size, O_CREAT | O_EXCL, m.mode);
  }
  errno = EINVAL;
  return false;
}

bool drop_capabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2];
  std::memset(data, 0, sizeof data);
  return ::syscall(SYS_capset, &header, data) == 0 &&
         (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == 0 || errno == EINVAL);
}

// The sandbox, in this order:
//   1. join the build's control groups (so everything after is counted);
//   2. a session of its own; for an unprivileged daemon, map itself to the
//      build uid in the user namespace the clone made; join the network
//      namespace made ahead, if there is one (root: before any user
//      namespace, while we still hold the capability it needs);
//   3. mounts private, then a fresh tmpfs as the new root, filled by the
//      planned mount steps (store, inputs read-only, /dev, /proc, /build,
//      /etc, sandbox-paths);
//   4. host name, loopback (no other interface exists without network; a
//      namespace made ahead by network_namespaces has it up already);
//   5. pivot_root into the new root and detach the old one;
//   6. become the build user (a root daemon joins the user namespace that
//      maps it only now, so the builder holds no capability over the
//      mounts above), drop every capability, die with the daemon;
//   7. no_new_privs, personality, no core dumps, the seccomp filter;
//   8. build directory, standard descriptors, signals, exec.
} // namespace

int run_child(void* arg) {
  const child_plan& c = *static_cast<const child_plan*>(arg);
  const sandbox_spec& spec = *c.spec;
  int rfd = c.report_fd;
  ::close(c.report_read_fd);
  // Every signal stays blocked (the parent blocked them before the clone)
  // until just before exec, so no handler of the parent's runs on its
  // memory here; execve itself resets handled signals to their defaults.
  // Ignored ones stay ignored across exec, and the builder must get SIGPIPE.
  ::signal(SIGPIPE, SIG_DFL);
  ::umask(0);
  for (std::size_t i = 0; i < c.cgroup_count; ++i)
    if (::write(c.cgroup_fds[i], "0", 1) != 1)
      fail(rfd, step::cgroup);
  if (::setsid() < 0)
    fail(rfd, step::new_session);
  if (c.isolated) {
    if (!c.as_root && (!write_proc_file("/proc/self/setgroups", "deny") ||
                       !write_proc_file("/proc/self/uid_map", c.uid_map) ||
                       !write_proc_file("/proc/self/gid_map", c.gid_map)))
      fail(rfd, step::uid_map);
    if (c.netns_fd >= 0 && ::setns(c.netns_fd, CLONE_NEWNET) != 0)
      fail(rfd, step::network_namespace);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      fail(rfd, step::private_mounts);
    if (::mount("tmpfs", c.root_dir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0 || ::chdir(c.root_dir) != 0)
      fail(rfd, step::new_root);
    for (std::size_t i = 0; i < c.mount_count; ++i)
      if (!apply(c.mounts[i]))
        fail(rfd, step::mount_step, static_cast<int>(i));
    if (::sethostname(spec.hostname.data(), spec.hostname.size()) != 0 ||
        ::setdomainname(spec.domainname.data(), spec.domainname.size()) != 0)
      fail(rfd, step::hostname);
    if (!spec.network && c.netns_fd < 0 && !loopback_up())
      fail(rfd, step::loopback);
    if (::syscall(SYS_pivot_root, ".", ".") != 0 || ::umount2(".", MNT_DETACH) != 0)
      fail(rfd, step::pivot_root);
    if (c.as_root && (::setns(c.userns_fd, CLONE_NEWUSER) != 0 || ::setgroups(0, nullptr) != 0))
      fail(rfd, step::build_user);
    if (::setresgid(spec.sandbox_gid, spec.sandbox_gid, spec.sandbox_gid) != 0 ||
        ::setresuid(spec.sandbox_uid, spec.sandbox_uid, spec.sandbox_uid) != 0)
      fail(rfd, step::build_user);
    if (!drop_capabilities())
      fail(rfd, step::capabilities);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
      fail(rfd, step::no_new_privs);
    if (::personality(spec.personality) < 0)
      fail(rfd, step::personality);
  } else if (c.remount) {
    if (!c.as_root) {
      // An ordinary user gets a mount namespace through a user namespace
      // in which it keeps its own uid and gid.
      if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
        fail(rfd, step::user_namespace);
      if (!write_proc_file("/proc/self/setgroups", "deny") || !write_proc_file("/proc/self/uid_map", c.uid_map) ||
          !write_proc_file("/proc/self/gid_map", c.gid_map))
        fail(rfd, step::uid_map);
    } else if (::unshare(CLONE_NEWNS) != 0) {
      fail(rfd, step::mount_namespace);
    }
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      fail(rfd, step::private_mounts);
    int r = c.overlay ? ::mount("overlay", spec.store_dir.c_str(), "overlay", 0, c.overlay_options)
                      : ::mount(spec.store_real_dir.c_str(), spec.store_dir.c_str(), nullptr, MS_BIND | MS_REC,
                                nullptr);
    if (r != 0)
      fail(rfd, step::store_mount);
  }
  // The builder dies with its Kiln, sandboxed or not (unsandboxed, what it
  // starts itself is outside any PID namespace and may outlive both). Set
  // after the uid change, which clears it. A parent that died before this
  // sends nothing, so it is looked for once more: the report pipe's read
  // end is the parent's, held until exec, and a write end without a reader
  // polls as an error (seen: a builder outliving a Kiln SIGKILLed while it
  // was being set up).
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
    fail(rfd, step::death_signal);
  struct pollfd parent_alive {rfd, 0, 0};
  if (::poll(&parent_alive, 1, 0) == 1 && (parent_alive.revents & POLLERR))
    ::_exit(1);
  struct rlimit no_core {0, 0};
  if (::setrlimit(RLIMIT_CORE, &no_core) != 0)
    fail(rfd, step::core_limit);
  if (spec.file_size_max) {
    struct rlimit file_size {spec.file_size_max, spec.file_size_max};
    if (::setrlimit(RLIMIT_FSIZE, &file_size) != 0)
      fail(rfd, step::file_size_limit);
  }
  if (c.filter && ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, c.filter) != 0)
    fail(rfd, step::seccomp);
  if (::chdir(c.cwd) != 0)
    fail(rfd, step::build_dir);
  if (::dup2(c.null_fd, 0) < 0 || ::dup2(c.out_fd, 1) < 0 || ::dup2(c.out_fd, 2) < 0)
    fail(rfd, step::io);
  ::umask(022);
  // From here to exec nothing can signal the child: it is in a session of
  // its own and nobody knows its pid yet.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(c.spec->program.c_str(), c.argv, c.envp);
  // A builder that cannot be executed is the build's failure, as in Nix: the
  // reason goes to its log and it exits 1 ("failed with exit code 1").
  const char* why = std::strerror(errno);
  const std::string& program = c.spec->program;
  struct iovec parts[] = {{const_cast<char*>("executing '"), 11},
                          {const_cast<char*>(program.data()), program.size()},
                          {const_cast<char*>("': "), 3},
                          {const_cast<char*>(why), std::strlen(why)},
                          {const_cast<char*>("\n"), 1}};
  ssize_t unused = ::writev(2, parts, 5);
  (void)unused;
  ::_exit(1);
}

} // namespace kiln::sandbox
