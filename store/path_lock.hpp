// Locks on store paths, shared with Nix: an fcntl write lock on `PATH.lock`.
// A holder that is done deletes the lock file and marks it stale (writes
// one byte) before letting go, so a waiter that then gets the lock on the
// deleted file sees the mark and tries again on a fresh file.
#pragma once

#include "store/fd.hpp"

#include <string>
#include <vector>

namespace kiln {

// fcntl locks belong to a process: two path_locks on one path inside the same
// process do not exclude each other, so in-process callers (the scheduler)
// must serialise themselves; these locks coordinate processes.
class path_lock {
public:
  path_lock() = default;
  path_lock(path_lock&&) = default;
  path_lock& operator=(path_lock&&) = default;
  ~path_lock() { release(); }

  // Waits until `path`.lock is ours. Throws on I/O errors.
  static path_lock acquire(const std::string& path);
  // As acquire, but returns an unlocked path_lock at once if someone else holds it.
  static path_lock try_acquire(const std::string& path);

  bool held() const { return static_cast<bool>(fd_); }
  // Releases; with `delete_file`, removes the lock file first (the protocol above).
  void release(bool delete_file = false);

private:
  unique_fd fd_;
  std::string lock_file_;
};

} // namespace kiln
