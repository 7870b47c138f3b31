// Locks on store paths, shared with Nix: an exclusive flock on `PATH.lock`
// (see file_lock.hpp for why flock).
// A holder that is done deletes the lock file and marks it stale (writes
// one byte) before letting go, so a waiter that then gets the lock on the
// deleted file sees the mark and tries again on a fresh file.
#pragma once

#include "store/io/fd.hpp"

#include <string>
#include <vector>

namespace kiln {

// The lock belongs to the open file, so it excludes other threads of this
// process as well as other processes.
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
