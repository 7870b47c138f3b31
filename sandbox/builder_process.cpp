#include "sandbox/builder_process.hpp"

#include "sandbox/build_users.hpp"
#include "sandbox/network_namespaces.hpp"
#include "sandbox/sandbox_child.hpp"
#include "sandbox/seccomp_filter.hpp"
#include "store/io/file_ops.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <pthread.h>
#include <vector>

namespace kiln::sandbox {

namespace {

// Blocks every signal on the calling thread for the lifetime of the value,
// so no handler runs in the child while it still shares our memory.
class signals_blocked {
public:
  signals_blocked() {
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &saved_);
  }
  ~signals_blocked() { ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }
  signals_blocked(const signals_blocked&) = delete;
  signals_blocked& operator=(const signals_blocked&) = delete;

private:
  sigset_t saved_;
};

constexpr int sandbox_namespaces = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;

// Runs a clone of the real one's shape (vfork-style, with `flags`) whose
// child exits at once: 0 if it worked, else errno.
int probe_clone(int flags) {
  constexpr std::size_t stack_size = 16 * 1024;
  std::unique_ptr<char[]> stack(new char[stack_size]);
  pid_t pid;
  {
    signals_blocked quiet;
    pid = ::clone([](void*) -> int { ::_exit(0); }, stack.get() + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD | flags,
                  nullptr);
  }
  if (pid < 0)
    return errno;
  int status;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return 0;
}

} // namespace

const std::string& sandbox_unavailable_reason() {
  static const std::string reason = [] {
    int flags = sandbox_namespaces | CLONE_NEWNET | (::geteuid() == 0 ? 0 : CLONE_NEWUSER);
    int err = probe_clone(flags);
    return err == 0 ? std::string()
                    : std::string("cannot create the sandbox's namespaces: ") + std::strerror(err);
  }();
  return reason;
}

builder_process builder_process::start(const sandbox_spec& spec) {
  // argv[0] is the builder's base name, as Nix passes it ("sh", not
  // "/bin/sh"): outputs that print $0 come out the same.
  std::vector<std::string> argv_s{spec.program.substr(spec.program.rfind('/') + 1)};
  argv_s.insert(argv_s.end(), spec.args.begin(), spec.args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (auto& [k, v] : spec.env)
    env_s.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_s)
    envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  const bool as_root = ::geteuid() == 0;
  const bool overlay = !spec.isolated && !spec.overlay_upper.empty();
  std::string uid_map, gid_map;
  if (spec.isolated) {
    uid_map = std::to_string(spec.sandbox_uid) + " " + std::to_string(::geteuid()) + " 1\n";
    gid_map = std::to_string(spec.sandbox_gid) + " " + std::to_string(::getegid()) + " 1\n";
  } else {
    uid_map = std::to_string(::geteuid()) + " " + std::to_string(::geteuid()) + " 1\n";
    gid_map = std::to_string(::getegid()) + " " + std::to_string(::getegid()) + " 1\n";
  }
  std::string overlay_options = "lowerdir=" + spec.store_real_dir + ",upperdir=" + spec.overlay_upper +
                                ",workdir=" + spec.overlay_work;
  if (overlay)
    for (auto& name : spec.overlay_hide) {
      // An overlay "whiteout": a 0/0 character device hides the lower entry.
      std::string w = spec.overlay_upper + "/" + name;
      if (::mknod(w.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0 && errno != EEXIST)
        throw_errno("hiding '" + name + "' from the check build");
    }

  // An unsandboxed build of a store kept elsewhere sees it at its logical
  // directory, which must exist on the host as a mount point (a fresh
  // machine may have no /nix yet; Nix makes it too when it opens a store).
  if (!spec.isolated && !overlay && spec.store_real_dir != spec.store_dir) {
    struct stat st;
    if (::stat(spec.store_dir.c_str(), &st) != 0) {
      try {
        make_directories(spec.store_dir);
      } catch (const std::exception& e) {
        throw error("an unsandboxed build needs '" + spec.store_dir + "' as the mount point of the store '" +
                    spec.store_real_dir + "': " + e.what());
      }
    }
  }

  // Mount targets relative to the new root, in writable buffers.
  std::vector<std::string> targets;
  std::vector<child_mount> mounts;
  if (spec.isolated) {
    targets.reserve(spec.mounts.size());
    for (auto& m : spec.mounts)
      targets.push_back("." + m.target);
    std::vector<bool> parents_exist = parents_made_earlier(spec.mounts);
    for (std::size_t i = 0; i < spec.mounts.size(); ++i) {
      auto& m = spec.mounts[i];
      mounts.push_back({m.kind, m.optional, m.source_is_dir, parents_exist[i], static_cast<mode_t>(m.mode),
                        m.source.c_str(), m.source.size(), targets[i].data()});
    }
  }
  int userns_fd = -1;
  if (spec.isolated && as_root)
    userns_fd = user_namespace_for(spec.host_uid, spec.host_gid, spec.sandbox_uid, spec.sandbox_gid);
  unique_fd netns;
  if (spec.isolated && !spec.network)
    netns = take_network_namespace();
  const sock_fprog* filter = spec.isolated && spec.seccomp ? &builder_seccomp_program() : nullptr;

  std::optional<build_cgroup> cgroup = build_cgroup::create(spec.limits);
  std::vector<int> cgroup_fds;
  if (cgroup)
    for (auto& fd : cgroup->join_fds())
      cgroup_fds.push_back(fd.get());

  int out[2], report[2];
  if (::pipe2(out, O_CLOEXEC) != 0)
    throw_errno("creating the builder's output pipe");
  unique_fd out_r(out[0]), out_w(out[1]);
  if (::pipe2(report, O_CLOEXEC) != 0)
    throw_errno("creating the setup report pipe");
  unique_fd report_r(report[0]), report_w(report[1]);
  unique_fd null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_in)
    throw_errno("opening /dev/null");

  child_plan plan{&spec,
                  argv.data(),
                  envp.data(),
                  overlay || spec.store_real_dir != spec.store_dir,
                  overlay,
                  as_root,
                  spec.isolated,
                  uid_map.c_str(),
                  gid_map.c_str(),
                  overlay_options.c_str(),
                  spec.root_dir.c_str(),
                  spec.isolated ? spec.cwd.c_str() : spec.build_dir.c_str(),
                  mounts.data(),
                  mounts.size(),
                  userns_fd,
                  netns ? netns.get() : -1,
                  cgroup_fds.data(),
                  cgroup_fds.size(),
                  filter,
                  report_w.get(),
                  null_in.get(),
                  out_w.get(),
                  report_r.get()};
  int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
  if (spec.isolated)
    flags |= sandbox_namespaces | (spec.network || netns ? 0 : CLONE_NEWNET) | (as_root ? 0 : CLONE_NEWUSER);
  // A vfork-style clone: the child borrows our memory until it execs, so
  // starting a builder costs no copy of this (large, threaded) process's
  // page tables and no copy-on-write faults afterwards. This thread waits
  // meanwhile; the others run on.
  constexpr std::size_t stack_size = 64 * 1024;
  std::unique_ptr<char[]> stack(new char[stack_size]);
  pid_t pid;
  {
    signals_blocked quiet;
    pid = ::clone(run_child, stack.get() + stack_size, flags, &plan);
  }
  if (pid < 0)
    throw_errno(spec.isolated ? "starting the builder in its sandbox" : "starting the builder");

  builder_process p;
  p.pid_ = pid;
  p.output_ = std::move(out_r);
  p.cgroup_ = std::move(cgroup);
  p.pid_namespace_ = spec.isolated;
  out_w.reset();
  report_w.reset();
  failure f{};
  ssize_t n;
  do
    n = ::read(report_r.get(), &f, sizeof f);
  while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof f)) {
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    p.reaped_ = true;
    throw setup_error(setup_failure_text(spec, f));
  }
  p.exited_ = unique_fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (spec.isolated) {
    // Not reaped yet, so the pid is still this child's. A child that has
    // already exited leaves nothing to keep.
    const char* kinds[] = {"mnt", "ipc"};
    for (std::size_t i = 0; i < 2; ++i)
      p.namespaces_[i] = unique_fd(::open(("/proc/" + std::to_string(pid) + "/ns/" + kinds[i]).c_str(),
                                          O_RDONLY | O_CLOEXEC));
  }
  if (!p.exited_) {
    p.kill_all();
    throw_errno("watching the builder (pidfd_open)");
  }
  return p;
}

builder_process::~builder_process() {
  if (pid_ > 0 && !reaped_) {
    kill_all();
    int status;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

void builder_process::kill_all() const {
  if (cgroup_)
    cgroup_->kill_all();
  if (pid_ > 0 && !reaped_)
    ::kill(-pid_, SIGKILL);
}

int builder_process::watch(const std::function<void(std::string_view)>& on_output) {
  char buf[65536];
  bool open = true, exited = false;
  while (open) {
    pollfd fds[2] = {{output_.get(), POLLIN, 0}, {exited_.get(), POLLIN, 0}};
    // Once the builder has exited, what is left of its group is killed
    // and the pipe drained; a grandchild holding it open cannot keep the
    // build alive.
    int r = ::poll(fds, exited ? 1 : 2, exited ? 1000 : -1);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      throw_errno("waiting for the builder");
    }
    if (r == 0)
      break; // killed group, nothing more came within a second
    if (!exited && (fds[1].revents & POLLIN)) {
      exited = true;
      kill_all();
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(output_.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        open = false;
      else
        on_output(std::string_view(buf, static_cast<std::size_t>(n)));
    }
  }
  int status = 0;
  struct rusage ru {};
  while (::wait4(pid_, &status, 0, &ru) < 0) {
    if (errno != EINTR)
      throw_errno("reaping the builder");
  }
  reaped_ = true;
  if (cgroup_) {
    // Outside a PID namespace a process that left the builder's session
    // may outlive it for a moment after kill_all.
    if (!pid_namespace_)
      cgroup_->wait_empty();
    usage_ = cgroup_->usage();
  } else {
    // No control group (an unprivileged daemon without a delegated one):
    // the builder's own figures, which include the children it waited for.
    auto us = [](const timeval& t) { return uint64_t(t.tv_sec) * 1000000 + uint64_t(t.tv_usec); };
    usage_.cpu_user_us = us(ru.ru_utime);
    usage_.cpu_system_us = us(ru.ru_stime);
    usage_.peak_memory = uint64_t(ru.ru_maxrss) * 1024;
  }
  return status;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status))
    return "failed with exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "failed due to signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "failed with wait status " + std::to_string(status);
}

} // namespace kiln::sandbox
