#include "store/io/tree_walk.hpp"

#include "store/io/error.hpp"
#include "store/io/file_ops.hpp"

#include <fcntl.h>
#include <unistd.h>

namespace kiln {

void dir_stack::push(unique_fd fd, const std::string& shown) {
  struct stat st;
  if (::fstat(fd.get(), &st) != 0)
    throw_errno("getting the status of '" + shown + "'");
  if (dirs_.size() >= window)
    dirs_[dirs_.size() - window].fd.reset(); // reopened through ".." when needed
  dirs_.push_back({std::move(fd), st.st_dev, st.st_ino});
}

unique_fd dir_stack::pop(const std::string& shown) {
  unique_fd fd = std::move(dirs_.back().fd);
  dirs_.pop_back();
  if (!dirs_.empty() && !dirs_.back().fd) {
    level& up = dirs_.back();
    up.fd.reset(::openat(fd.get(), "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat st;
    if (!up.fd || ::fstat(up.fd.get(), &st) != 0)
      throw_errno("opening the directory above '" + shown + "'");
    if (st.st_dev != up.dev || st.st_ino != up.ino)
      throw error("the directory above '" + shown + "' was moved while being walked");
  }
  return fd;
}

unique_fd open_walked_directory(const tree_entry& e) {
  unique_fd fd(::openat(e.dirfd, e.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd)
    throw_errno("opening the directory '" + e.path + "'");
  return fd;
}

namespace {

struct open_dir {
  std::string name; // in its parent
  struct stat st;
  std::vector<std::string> entries;
  std::size_t next = 0;
  std::size_t path_size = 0; // of the walk's path while in this directory
};

} // namespace

void walk_tree(int dirfd, const std::string& name, const std::string& shown, tree_visitor& v,
               std::size_t max_depth) {
  std::string path = shown;
  std::vector<open_dir> open; // parallel to `dirs`
  dir_stack dirs;
  auto parent_fd = [&] { return dirs.empty() ? dirfd : dirs.top(); };
  // Visits `child` of the innermost directory (or the root); opens it if
  // it is a directory to walk.
  auto visit = [&](const std::string& child) {
    struct stat st;
    if (::fstatat(parent_fd(), child.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT && v.skips_vanished())
        return false;
      throw_errno("getting the status of '" + path + "'");
    }
    unique_fd fd = v.visit({parent_fd(), child, st, path, open.size()});
    if (!fd)
      return false;
    if (open.size() >= max_depth)
      throw error("'" + path + "' is nested deeper than " + std::to_string(max_depth) + " directories");
    std::vector<std::string> entries = read_directory(fd.get(), path);
    v.order(entries);
    dirs.push(std::move(fd), path);
    open.push_back({child, st, std::move(entries), 0, path.size()});
    return true;
  };
  visit(name);
  while (!open.empty()) {
    open_dir& dir = open.back();
    if (dir.next < dir.entries.size()) {
      const std::string& child = dir.entries[dir.next++];
      path += '/';
      path += child;
      v.begin_entry(child);
      if (!visit(child)) {
        v.end_entry();
        path.resize(dir.path_size);
      }
      continue;
    }
    unique_fd fd = dirs.pop(path);
    open_dir done = std::move(open.back());
    open.pop_back();
    v.leave({parent_fd(), done.name, done.st, path, open.size()}, fd.get());
    if (!open.empty()) {
      v.end_entry();
      path.resize(open.back().path_size);
    }
  }
}

} // namespace kiln
