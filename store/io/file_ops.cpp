#include "store/io/file_ops.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/tree_walk.hpp"

#include <cerrno>
#include <cstdint>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <set>
#include <vector>

namespace kiln {
bool path_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> read_directory(int dirfd, const std::string& shown) {
  int dup_fd = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0)
    throw_errno("duplicating the descriptor of '" + shown + "'");
  DIR* dir = ::fdopendir(dup_fd);
  if (!dir) {
    ::close(dup_fd);
    throw_errno("reading the directory '" + shown + "'");
  }
  ::rewinddir(dir); // the duplicate shares its offset with dirfd
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* d = ::readdir(dir)) {
    std::string_view n = d->d_name;
    if (n != "." && n != "..")
      names.emplace_back(n);
    errno = 0;
  }
  int err = errno;
  ::closedir(dir);
  if (err != 0)
    throw sys_error("reading the directory '" + shown + "'", err);
  return names;
}

unique_fd open_directory(const std::string& dir) {
  unique_fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd)
    throw_errno("opening the directory '" + dir + "'");
  return fd;
}

void empty_directory(const std::string& dir) {
  unique_fd fd = open_directory(dir);
  for (auto& name : read_directory(fd.get(), dir))
    remove_tree_at(fd.get(), name);
}

namespace {

// A directory to remove, opened up first if it is read-only (a
// canonicalised store path).
unique_fd open_for_removal(const tree_entry& e) {
  unique_fd fd(::openat(e.dirfd, e.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd && errno == EACCES && ::fchmodat(e.dirfd, e.name.c_str(), 0700, 0) == 0)
    return open_walked_directory(e);
  if (!fd)
    throw_errno("opening the directory '" + e.path + "' for removal");
  return fd;
}

class remover : public tree_visitor {
public:
  uint64_t freed = 0;

  unique_fd visit(const tree_entry& e) override {
    if (S_ISDIR(e.st.st_mode)) {
      unique_fd fd = open_for_removal(e);
      if ((e.st.st_mode & 0700) != 0700)
        ::fchmod(fd.get(), 0700);
      return fd;
    }
    if (::unlinkat(e.dirfd, e.name.c_str(), 0) != 0 && errno != ENOENT)
      throw_errno("removing '" + e.path + "'");
    if (e.st.st_nlink == 1)
      freed += static_cast<uint64_t>(e.st.st_size);
    return {};
  }
  void leave(const tree_entry& e, int) override {
    if (::unlinkat(e.dirfd, e.name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
      throw_errno("removing the directory '" + e.path + "'");
  }
  bool skips_vanished() const override { return true; } // already removed is removed
};

class chowner : public tree_visitor {
public:
  chowner(unsigned uid, unsigned gid) : uid_(uid), gid_(gid) {}

  unique_fd visit(const tree_entry& e) override {
    if (S_ISDIR(e.st.st_mode)) {
      unique_fd fd = open_walked_directory(e);
      if (::fchown(fd.get(), uid_, gid_) != 0)
        throw_errno("changing the owner of '" + e.path + "'");
      return fd;
    }
    if (::fchownat(e.dirfd, e.name.c_str(), uid_, gid_, AT_SYMLINK_NOFOLLOW) != 0)
      throw_errno("changing the owner of '" + e.path + "'");
    return {};
  }

private:
  unsigned uid_, gid_;
};

// Copies into a second tree built alongside the walk of the first.
class copier : public tree_visitor {
public:
  copier(int to_dir, const std::string& to_name) : to_dir_(to_dir), to_name_(to_name) {}

  unique_fd visit(const tree_entry& e) override {
    int to_dir = to_.empty() ? to_dir_ : to_.top();
    const std::string& to_name = to_.empty() ? to_name_ : e.name;
    if (S_ISLNK(e.st.st_mode)) {
      std::string target(static_cast<std::size_t>(e.st.st_size) + 1, '\0');
      ssize_t n = ::readlinkat(e.dirfd, e.name.c_str(), target.data(), target.size());
      if (n < 0 || static_cast<std::size_t>(n) >= target.size())
        throw_errno("reading the symlink '" + e.path + "'");
      target.resize(static_cast<std::size_t>(n));
      if (::symlinkat(target.c_str(), to_dir, to_name.c_str()) != 0)
        throw_errno("creating the symlink '" + to_name + "'");
    } else if (S_ISDIR(e.st.st_mode)) {
      unique_fd from = open_walked_directory(e);
      if (::mkdirat(to_dir, to_name.c_str(), 0700) != 0)
        throw_errno("creating the directory '" + to_name + "'");
      unique_fd to(::openat(to_dir, to_name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!to)
        throw_errno("opening the directory '" + to_name + "'");
      to_.push(std::move(to), to_name);
      return from;
    } else if (S_ISREG(e.st.st_mode)) {
      copy_file(e, to_dir, to_name);
    } else {
      throw error("'" + e.path + "' is not a regular file, directory or symlink");
    }
    return {};
  }

  void leave(const tree_entry& e, int) override {
    unique_fd to = to_.pop(e.name);
    if (::fchmod(to.get(), 0755) != 0)
      throw_errno("setting the mode of the copy of '" + e.path + "'");
  }

private:
  static void copy_file(const tree_entry& e, int to_dir, const std::string& to_name) {
    unique_fd from(::openat(e.dirfd, e.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!from)
      throw_errno("opening '" + e.path + "'");
    mode_t mode = (e.st.st_mode & S_IXUSR) ? 0755 : 0644;
    unique_fd to(::openat(to_dir, to_name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!to)
      throw_errno("creating '" + to_name + "'");
    char buf[1 << 16];
    while (std::size_t n = read_some(from.get(), buf, sizeof buf, e.path))
      write_all(to.get(), buf, n, to_name);
  }

  int to_dir_;
  std::string to_name_;
  dir_stack to_;
};

class usage_counter : public tree_visitor {
public:
  uint64_t bytes = 0;

  unique_fd visit(const tree_entry& e) override {
    if (e.st.st_nlink <= 1 || S_ISDIR(e.st.st_mode) || inodes_.insert({e.st.st_dev, e.st.st_ino}).second)
      bytes += static_cast<uint64_t>(e.st.st_blocks) * 512;
    if (!S_ISDIR(e.st.st_mode))
      return {};
    return unique_fd(::openat(e.dirfd, e.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  }
  bool skips_vanished() const override { return true; }

private:
  std::set<std::pair<dev_t, ino_t>> inodes_;
};

} // namespace

uint64_t disk_usage(const std::string& path) {
  auto [parent, name] = split_path(path);
  unique_fd fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  struct stat st;
  if (!fd || ::fstatat(fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    return 0;
  usage_counter c;
  try {
    walk_tree(fd.get(), name, path, c, SIZE_MAX);
  } catch (const std::exception&) {
    // changed under us (a directory moved away): what was counted stands
  }
  return c.bytes;
}

uint64_t remove_tree_at(int dirfd, const std::string& name) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT)
      return 0;
    throw_errno("getting the status of '" + name + "'");
  }
  remover r;
  walk_tree(dirfd, name, name, r, SIZE_MAX);
  return r.freed;
}

void chown_tree_at(int dirfd, const std::string& name, unsigned uid, unsigned gid) {
  chowner c(uid, gid);
  walk_tree(dirfd, name, name, c, SIZE_MAX);
}

void copy_tree_fresh_at(int from_dir, const std::string& name, int to_dir, const std::string& to_name) {
  copier c(to_dir, to_name);
  walk_tree(from_dir, name, name, c);
}

void chown_tree(const std::string& path, unsigned uid, unsigned gid) {
  auto [parent, name] = split_path(path);
  unique_fd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir)
    throw_errno("opening '" + parent + "'");
  chown_tree_at(dir.get(), name, uid, gid);
}

namespace {

// Nothing a build left is opened before it is known to be a regular file
// or a directory: opening a device node can act (a watchdog arms itself),
// and a FIFO blocks; and what a name refers to can change between a stat
// and an open. So the name is held as an O_PATH descriptor, that inode's
// type checked, and it is reopened through the descriptor (the same inode,
// whatever the name refers to by then). False on a system error (errno);
// otherwise `fd` is empty for anything but a file or directory.
bool open_file_or_directory(int dirfd, const char* name, struct stat& st, unique_fd& fd) {
  unique_fd held(::openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!held || ::fstat(held.get(), &st) != 0)
    return false;
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
    return true;
  const int dir = S_ISDIR(st.st_mode) ? O_DIRECTORY : 0;
  std::string again = "/proc/self/fd/" + std::to_string(held.get());
  fd = unique_fd(::open(again.c_str(), O_RDONLY | O_CLOEXEC | dir));
  if (!fd && errno == ENOENT) {
    // No /proc here: by name, and only if it is still the same inode.
    fd = unique_fd(::openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | dir));
    struct stat now;
    if (fd && (::fstat(fd.get(), &now) != 0 || now.st_ino != st.st_ino || now.st_dev != st.st_dev)) {
      fd.reset();
      errno = ESTALE;
    }
  }
  return bool(fd);
}

class syncer : public tree_visitor {
public:
  unique_fd visit(const tree_entry& e) override {
    struct stat st;
    unique_fd fd;
    if (!open_file_or_directory(e.dirfd, e.name.c_str(), st, fd))
      throw_errno("opening '" + e.path + "' to sync it");
    if (fd && S_ISDIR(st.st_mode))
      return fd; // synced once its entries are
    if (fd && ::fsync(fd.get()) != 0)
      throw_errno("syncing '" + e.path + "'");
    return {}; // a symlink is made durable by its directory's fsync
  }
  void leave(const tree_entry& e, int fd) override {
    if (::fsync(fd) != 0)
      throw_errno("syncing '" + e.path + "'");
  }
};

} // namespace

void make_directories(const std::string& dir, unsigned mode) {
  if (dir.empty() || ::mkdir(dir.c_str(), mode) == 0 || errno == EEXIST)
    return;
  if (errno != ENOENT)
    throw_errno("creating the directory '" + dir + "'");
  auto slash = dir.find_last_of('/');
  if (slash == std::string::npos || slash == 0)
    throw_errno("creating the directory '" + dir + "'");
  make_directories(dir.substr(0, slash), mode);
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST)
    throw_errno("creating the directory '" + dir + "'");
}

void fsync_tree(const std::string& path) {
  syncer s;
  walk_tree(AT_FDCWD, path, path, s);
}

namespace {

void start_writeback_at(int dirfd, const char* name, int depth) {
  struct stat st;
  unique_fd fd;
  if (!open_file_or_directory(dirfd, name, st, fd) || !fd)
    return;
  if (S_ISREG(st.st_mode)) {
    ::sync_file_range(fd.get(), 0, 0, SYNC_FILE_RANGE_WRITE);
  } else if (depth < 256) {
    try {
      for (auto& child : read_directory(fd.get(), name))
        start_writeback_at(fd.get(), child.c_str(), depth + 1);
    } catch (const std::exception&) {
    }
  }
}

} // namespace

void start_writeback_tree(const std::string& path) {
  start_writeback_at(AT_FDCWD, path.c_str(), 0);
}

void fsync_directory(const std::string& dir) {
  unique_fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0)
    throw_errno("syncing the directory '" + dir + "'");
}

std::pair<std::string, std::string> split_path(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/')
    p.pop_back();
  auto slash = p.rfind('/');
  if (slash == std::string::npos)
    return {".", p};
  return {slash == 0 ? "/" : p.substr(0, slash), p.substr(slash + 1)};
}

uint64_t remove_tree(const std::string& path) {
  auto [parent, name] = split_path(path);
  unique_fd fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd)
    throw_errno("opening '" + parent + "'");
  return remove_tree_at(fd.get(), name);
}

} // namespace kiln
