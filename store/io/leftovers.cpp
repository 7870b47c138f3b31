#include "store/io/leftovers.hpp"

#include <cerrno>
#include <csignal>

namespace kiln {

pid_t pid_in_name(std::string_view name, std::string_view prefix) {
  if (name.substr(0, prefix.size()) != prefix)
    return 0;
  pid_t pid = 0;
  for (char c : name.substr(prefix.size())) {
    if (c < '0' || c > '9')
      break;
    if (pid > 100000000)
      return 0;
    pid = pid * 10 + (c - '0');
  }
  return pid;
}

bool process_gone(pid_t pid) { return pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH; }

} // namespace kiln
