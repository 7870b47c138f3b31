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

builder_process builder_process::start(const builder_spec& spec) {
  // Everything the child needs is prepared here: after fork only system
  // calls run.
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
  const bool remount = overlay || spec.store_real_dir != spec.store_dir;
  const bool as_root = ::geteuid() == 0;
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

  pid_t pid = ::fork();
  if (pid < 0)
    throw_errno("forking the builder");
  if (pid == 0) {
    int rfd = report_w.get();
    ::signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::setsid() < 0)
      fail(rfd, step::new_session);
    if (remount) {
      if (!as_root) {
        // An ordinary user gets a mount namespace through a user
        // namespace in which it keeps its own uid and gid.
        if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
          fail(rfd, step::user_namespace);
        if (!write_proc_file("/proc/self/setgroups", "deny") ||
            !write_proc_file("/proc/self/uid_map", uid_map) ||
            !write_proc_file("/proc/self/gid_map", gid_map))
          fail(rfd, step::uid_map);
      } else if (::unshare(CLONE_NEWNS) != 0) {
        fail(rfd, step::mount_namespace);
      }
      if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        fail(rfd, step::private_mounts);
      int r = overlay ? ::mount("overlay", spec.store_dir.c_str(), "overlay", 0, overlay_options.c_str())
                      : ::mount(spec.store_real_dir.c_str(), spec.store_dir.c_str(), nullptr,
                                MS_BIND | MS_REC, nullptr);
      if (r != 0)
        fail(rfd, step::store_mount);
    }
    struct rlimit no_core {0, 0};
    if (::setrlimit(RLIMIT_CORE, &no_core) != 0)
      fail(rfd, step::core_limit);
    if (::chdir(spec.build_dir.c_str()) != 0)
      fail(rfd, step::build_dir);
    if (::dup2(null_in.get(), 0) < 0 || ::dup2(out_w.get(), 1) < 0 || ::dup2(out_w.get(), 2) < 0)
      fail(rfd, step::io);
    ::execve(argv[0], argv.data(), envp.data());
    fail(rfd, step::exec);
  }

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
