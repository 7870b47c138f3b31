#include "sandbox/sandbox_store.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace kiln::sandbox {

namespace {

constexpr mode_t file_mode = 0444, dir_mode = 0755;

enum class kind { other, file_point, dir_point };

// A mount point is only trusted if it is exactly what this code makes: owned
// by us (root; a builder cannot make a root-owned entry), empty, with the
// mode we give it. A builder can write into the store directory, so
// anything else there (a symlink, a file of its own) is removed, never reused.
kind kind_of(int dirfd, const std::string& name) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    return kind::other;
  if (st.st_uid != ::geteuid())
    return kind::other;
  if (S_ISREG(st.st_mode) && (st.st_mode & 07777) == file_mode && st.st_size == 0 && st.st_nlink == 1)
    return kind::file_point;
  if (S_ISDIR(st.st_mode) && (st.st_mode & 07777) == dir_mode && st.st_nlink == 2)
    return kind::dir_point;
  return kind::other;
}

void rename_no_replace(int dirfd, const std::string& from, const std::string& to, const std::string& shown) {
  if (::syscall(SYS_renameat2, dirfd, from.c_str(), dirfd, to.c_str(), RENAME_NOREPLACE) != 0)
    throw_errno("renaming the mount point '" + from + "' to '" + to + "' in '" + shown + "'");
}

void make_point(int dirfd, const std::string& name, bool dir, const std::string& shown) {
  if (dir) {
    if (::mkdirat(dirfd, name.c_str(), dir_mode) != 0 || ::fchmodat(dirfd, name.c_str(), dir_mode, 0) != 0)
      throw_errno("creating the mount point '" + name + "' in '" + shown + "'");
    return;
  }
  int fd = ::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, file_mode);
  if (fd < 0)
    throw_errno("creating the mount point '" + name + "' in '" + shown + "'");
  int r = ::fchmod(fd, file_mode); // whatever the umask
  ::close(fd);
  if (r != 0)
    throw_errno("creating the mount point '" + name + "' in '" + shown + "'");
}

} // namespace

std::map<std::string, bool> store_mount_points(const sandbox_spec& spec) {
  std::map<std::string, bool> points;
  const std::string prefix = spec.store_dir + "/";
  for (auto& m : spec.mounts) {
    if ((m.kind != mount_step::bind && m.kind != mount_step::bind_ro) || m.target.compare(0, prefix.size(), prefix) != 0)
      continue;
    std::string name = m.target.substr(prefix.size());
    if (!name.empty() && name.find('/') == std::string::npos)
      points[name] = m.source_is_dir;
  }
  return points;
}

void prepare_mount_points(const std::string& shown, const std::map<std::string, bool>& wanted) {
  unique_fd fd = open_directory(shown);
  const int dirfd = fd.get();
  std::map<std::string, bool> missing = wanted;
  std::vector<std::string> spare[2]; // [is a directory]
  for (auto& name : read_directory(dirfd, shown)) {
    kind k = kind_of(dirfd, name);
    auto w = missing.find(name);
    if (k == kind::other) {
      remove_tree_at(dirfd, name);
    } else if (w != missing.end() && w->second == (k == kind::dir_point)) {
      missing.erase(w);
    } else if (w != missing.end()) {
      remove_tree_at(dirfd, name); // wanted, but of the other kind
    } else {
      spare[k == kind::dir_point].push_back(name);
    }
  }
  for (auto& [name, dir] : missing) {
    auto& pool = spare[dir];
    if (pool.empty()) {
      make_point(dirfd, name, dir, shown);
    } else {
      rename_no_replace(dirfd, pool.back(), name, shown);
      pool.pop_back();
    }
  }
  for (auto& pool : spare)
    for (auto& name : pool)
      remove_tree_at(dirfd, name);
}

void sweep_sandbox_store(const std::string& shown) {
  unique_fd fd = open_directory(shown);
  for (auto& name : read_directory(fd.get(), shown))
    if (kind_of(fd.get(), name) == kind::other)
      remove_tree_at(fd.get(), name);
}

} // namespace kiln::sandbox
