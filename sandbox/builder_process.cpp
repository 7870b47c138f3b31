#include "sandbox/builder_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <pthread.h>

namespace kiln::sandbox {

namespace {

// The steps the child can fail at, in the order it takes them. The child
// sends only {step, errno}; the parent words the message, since building
// strings after fork in a threaded process is not safe.
enum class step : int {
  new_session, user_namespace, uid_map, mount_namespace, private_mounts, store_mount,
  core_limit, build_dir, io, exec
};

struct failure {
  int at;
  int err;
};

std::string describe(const builder_spec& spec, failure f) {
  std::string what;
  switch (static_cast<step>(f.at)) {
  case step::new_session: what = "creating a process group"; break;
  case step::user_namespace: what = "creating a user namespace"; break;
  case step::uid_map: what = "mapping the build user"; break;
  case step::mount_namespace: what = "creating a mount namespace"; break;
  case step::private_mounts: what = "making mounts private"; break;
  case step::store_mount:
    what = spec.overlay_upper.empty() ? "bind-mounting '" + spec.store_real_dir + "' on '" + spec.store_dir + "'"
                                      : "mounting an overlay of '" + spec.store_real_dir + "' on '" + spec.store_dir + "'";
    break;
  case step::core_limit: what = "disabling core dumps"; break;
  case step::build_dir: what = "changing to the build directory '" + spec.build_dir + "'"; break;
  case step::io: what = "redirecting the builder's output"; break;
  case step::exec: what = "executing '" + spec.program + "'"; break;
  }
  return "while setting up the build environment: " + what + ": " + std::strerror(f.err);
}

[[noreturn]] void fail(int report_fd, step at) {
  failure f{static_cast<int>(at), errno};
  ssize_t unused = ::write(report_fd, &f, sizeof f);
  (void)unused;
  ::_exit(1);
}

bool write_proc_file(const char* path, const std::string& text) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

} // namespace

namespace {

// What the child needs, prepared before the clone: in the child only
// system calls run, since it shares the parent's memory and must not touch
// the allocator or any lock another thread may hold.
struct child_plan {
  const builder_spec* spec;
  char** argv;
  char** envp;
  bool remount, overlay, as_root;
  const char* uid_map;
  const char* gid_map;
  const char* overlay_options;
  int report_fd, null_fd, out_fd;
};

int run_child(void* arg) {
  const child_plan& c = *static_cast<const child_plan*>(arg);
  const builder_spec& spec = *c.spec;
  int rfd = c.report_fd;
  // Every signal stays blocked (the parent blocked them before the clone)
  // until just before exec, so no handler of the parent's runs on its
  // memory here; execve itself resets handled signals to their defaults.
  // Ignored ones stay ignored across exec, and the builder must get SIGPIPE.
  ::signal(SIGPIPE, SIG_DFL);
  if (::setsid() < 0)
    fail(rfd, step::new_session);
  if (c.remount) {
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
  struct rlimit no_core {0, 0};
  if (::setrlimit(RLIMIT_CORE, &no_core) != 0)
    fail(rfd, step::core_limit);
  if (::chdir(spec.build_dir.c_str()) != 0)
    fail(rfd, step::build_dir);
  if (::dup2(c.null_fd, 0) < 0 || ::dup2(c.out_fd, 1) < 0 || ::dup2(c.out_fd, 2) < 0)
    fail(rfd, step::io);
  // From here to exec nothing can signal the child: it is in a session of
  // its own and nobody knows its pid yet.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(c.argv[0], c.argv, c.envp);
  fail(rfd, step::exec);
}

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

} // namespace

builder_process builder_process::start(const builder_spec& spec) {
  std::vector<std::string> argv_s{spec.program};
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

  const bool overlay = !spec.overlay_upper.empty();
  std::string uid_map = std::to_string(::geteuid()) + " " + std::to_string(::geteuid()) + " 1\n";
  std::string gid_map = std::to_string(::getegid()) + " " + std::to_string(::getegid()) + " 1\n";
  std::string overlay_options = "lowerdir=" + spec.store_real_dir + ",upperdir=" + spec.overlay_upper +
                                ",workdir=" + spec.overlay_work;
  if (overlay)
    for (auto& name : spec.overlay_hide) {
      // An overlay "whiteout": a 0/0 character device hides the lower entry.
      std::string w = spec.overlay_upper + "/" + name;
      if (::mknod(w.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0 && errno != EEXIST)
        throw_errno("hiding '" + name + "' from the check build");
    }

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
                  ::geteuid() == 0,
                  uid_map.c_str(),
                  gid_map.c_str(),
                  overlay_options.c_str(),
                  report_w.get(),
                  null_in.get(),
                  out_w.get()};
  // A vfork-style clone: the child borrows our memory until it execs, so
  // starting a builder costs no copy of this (large, threaded) process's
  // page tables and no copy-on-write faults afterwards. This thread waits
  // meanwhile; the others run on.
  constexpr std::size_t stack_size = 64 * 1024;
  std::unique_ptr<char[]> stack(new char[stack_size]);
  pid_t pid;
  {
    signals_blocked quiet;
    pid = ::clone(run_child, stack.get() + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
  }
  if (pid < 0)
    throw_errno("starting the builder");

  builder_process p;
  p.pid_ = pid;
  p.output_ = std::move(out_r);
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
    throw setup_error(describe(spec, f));
  }
  p.exited_ = unique_fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!p.exited_) {
    p.kill_group();
    throw_errno("watching the builder (pidfd_open)");
  }
  return p;
}

builder_process::~builder_process() {
  if (pid_ > 0 && !reaped_) {
    kill_group();
    int status;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

void builder_process::kill_group() const {
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
      ::kill(-pid_, SIGKILL);
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
  while (::waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR)
      throw_errno("reaping the builder");
  }
  reaped_ = true;
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
