// kiln-test-peak-rss CMD [ARG...]: runs CMD and prints its peak RSS in KiB
// (wait4's ru_maxrss) on stderr's last line as "peak-rss-kib N", then exits
// as CMD did. A process's maxrss carries over from the image it was forked
// and exec'd from, so measuring from a large parent (the Python test
// runner) would report the parent's size; this small one adds ~1 MiB.
#include <cstdio>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: kiln-test-peak-rss CMD [ARG...]\n");
    return 2;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execvp(argv[1], argv + 1);
    std::perror(argv[1]);
    ::_exit(127);
  }
  int status = 0;
  struct rusage ru {};
  if (pid < 0 || ::wait4(pid, &status, 0, &ru) < 0) {
    std::perror("kiln-test-peak-rss");
    return 2;
  }
  std::fprintf(stderr, "peak-rss-kib %ld\n", ru.ru_maxrss);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
