#include "store/path_lock.hpp"

#include "store/error.hpp"

#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln {
namespace {

// Returns an fd holding the lock, or an empty one if `wait` is false and
// the lock is taken.
unique_fd lock_file(const std::string& file, bool wait) {
  for (;;) {
    unique_fd fd(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd)
      throw_errno("opening lock file '" + file + "'");
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    while (::fcntl(fd.get(), wait ? F_SETLKW : F_SETLK, &fl) != 0) {
      if (errno == EINTR)
        continue;
      if (!wait && (errno == EACCES || errno == EAGAIN))
        return unique_fd();
      throw_errno("locking '" + file + "'");
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0)
      throw_errno("getting the status of lock file '" + file + "'");
    if (st.st_size == 0)
      return fd;
    // Stale: its previous holder deleted it. Take a fresh one.
  }
}

} // namespace

path_lock path_lock::acquire(const std::string& path) {
  path_lock l;
  l.lock_file_ = path + ".lock";
  l.fd_ = lock_file(l.lock_file_, true);
  return l;
}

path_lock path_lock::try_acquire(const std::string& path) {
  path_lock l;
  l.lock_file_ = path + ".lock";
  l.fd_ = lock_file(l.lock_file_, false);
  return l;
}

void path_lock::release(bool delete_file) {
  if (!fd_)
    return;
  if (delete_file) {
    ::unlink(lock_file_.c_str());
    (void)!::write(fd_.get(), "d", 1);
  }
  fd_.reset(); // closing drops the fcntl lock
}

} // namespace kiln
