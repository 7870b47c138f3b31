#include "store/local/path_lock.hpp"

#include "store/io/error.hpp"
#include "store/io/file_lock.hpp"

#include <cerrno>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln {
namespace {

// Returns an fd holding the lock, or an empty one if `wait` is false and
// the lock is taken.
unique_fd lock_path_file(const std::string& file, bool wait) {
  for (;;) {
    unique_fd fd = open_lock_file(file);
    if (!lock_file(fd.get(), lock_kind::exclusive, wait, file))
      return unique_fd();
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
  l.fd_ = lock_path_file(l.lock_file_, true);
  return l;
}

path_lock path_lock::try_acquire(const std::string& path) {
  path_lock l;
  l.lock_file_ = path + ".lock";
  l.fd_ = lock_path_file(l.lock_file_, false);
  return l;
}

void path_lock::release(bool delete_file) {
  if (!fd_)
    return;
  if (delete_file) {
    ::unlink(lock_file_.c_str());
    (void)!::write(fd_.get(), "d", 1);
  }
  fd_.reset(); // closing drops the lock
}

} // namespace kiln
