#include "store/io/file_lock.hpp"

#include "store/io/error.hpp"

#include <cerrno>
#include <fcntl.h>
#include <sys/file.h>

namespace kiln {

unique_fd open_lock_file(const std::string& path) {
  unique_fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd)
    throw_errno("opening lock file '" + path + "'");
  return fd;
}

bool lock_file(int fd, lock_kind kind, bool wait, const std::string& what) {
  int op = kind == lock_kind::shared ? LOCK_SH : kind == lock_kind::exclusive ? LOCK_EX : LOCK_UN;
  if (!wait)
    op |= LOCK_NB;
  while (::flock(fd, op) != 0) {
    if (errno == EINTR)
      continue;
    if (!wait && errno == EWOULDBLOCK)
      return false;
    throw_errno("locking '" + what + "'");
  }
  return true;
}

} // namespace kiln
