#include "sandbox/run_capture.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace kiln::sandbox {

captured run_capture(const std::string& program, const std::vector<std::string>& args, char** envp,
                     const std::string& what, bool with_stderr) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0)
    throw_errno("creating a pipe for " + what);
  unique_fd r(out[0]), w(out[1]);
  std::vector<std::string> argv_s{program};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, w.get(), 1);
  if (with_stderr)
    posix_spawn_file_actions_adddup2(&fa, w.get(), 2);
  pid_t pid;
  int err = ::posix_spawn(&pid, program.c_str(), &fa, nullptr, argv.data(), envp);
  posix_spawn_file_actions_destroy(&fa);
  w.reset();
  if (err != 0) {
    errno = err;
    throw_errno("running " + what);
  }
  captured c;
  char buf[4096];
  for (ssize_t n; (n = ::read(r.get(), buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      break;
    c.output.append(buf, static_cast<std::size_t>(n));
  }
  while (::waitpid(pid, &c.status, 0) < 0 && errno == EINTR) {
  }
  return c;
}

} // namespace kiln::sandbox
