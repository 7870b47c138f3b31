#include "store/local/canonicalise.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"
#include "store/io/tree_walk.hpp"

#include <fcntl.h>
#include <set>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace kiln {
namespace {

class canonicaliser : public tree_visitor {
public:
  canonicalise_result result;

  unique_fd visit(const tree_entry& e) override {
    ++result.objects;
    if (!S_ISDIR(e.st.st_mode) && e.st.st_nlink > 1 && !inodes_.insert({e.st.st_dev, e.st.st_ino}).second) {
      ++result.hard_links_seen; // the same inode under another name: already done
      return {};
    }
    if (S_ISDIR(e.st.st_mode)) {
      return open_walked_directory(e); // made read-only once its entries are done
    } else if (S_ISREG(e.st.st_mode)) {
      unique_fd fd(::openat(e.dirfd, e.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd)
        throw_errno("opening '" + e.path + "'");
      strip_xattrs(fd.get(), e.path);
      fix_inode(e.dirfd, e.name, e.st, e.path, (e.st.st_mode & S_IXUSR) ? 0555 : 0444);
    } else if (S_ISLNK(e.st.st_mode)) {
      fix_inode(e.dirfd, e.name, e.st, e.path, 0);
    } else {
      throw error("'" + e.path + "' has an unsupported file type for the store");
    }
    return {};
  }

  void leave(const tree_entry& e, int fd) override {
    strip_xattrs(fd, e.path);
    fix_inode(e.dirfd, e.name, e.st, e.path, 0555);
  }

private:
  static void strip_xattrs(int fd, const std::string& shown) {
    ssize_t len = ::flistxattr(fd, nullptr, 0);
    if (len <= 0)
      return; // none, or not supported by the file system
    std::vector<char> names(static_cast<std::size_t>(len));
    len = ::flistxattr(fd, names.data(), names.size());
    for (ssize_t i = 0; i < len;) {
      std::string attr(names.data() + i);
      i += static_cast<ssize_t>(attr.size()) + 1;
      // SELinux labels and the like may be undeletable; Nix tolerates that too.
      if (::fremovexattr(fd, attr.c_str()) != 0 && attr.rfind("security.", 0) != 0)
        throw_errno("removing extended attribute '" + attr + "' from '" + shown + "'");
    }
  }

  // Owner, mode (unless a symlink: mode 0) and times, in that order: a chown
  // clears setuid bits, and the times must be set last.
  static void fix_inode(int dirfd, const std::string& name, const struct stat& st,
                        const std::string& shown, mode_t mode) {
    if (st.st_uid != ::geteuid() || st.st_gid != ::getegid()) {
      if (::fchownat(dirfd, name.c_str(), ::geteuid(), ::getegid(), AT_SYMLINK_NOFOLLOW) != 0)
        throw_errno("'" + shown + "' is owned by uid " + std::to_string(st.st_uid) +
                    " and cannot be taken over");
    }
    if (mode != 0 && (st.st_mode & 07777) != mode &&
        ::fchmodat(dirfd, name.c_str(), mode, 0) != 0)
      throw_errno("changing the mode of '" + shown + "'");
    struct timespec times[2] = {{1, 0}, {1, 0}};
    if (::utimensat(dirfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
      throw_errno("setting the times of '" + shown + "'");
  }

  std::set<std::pair<dev_t, ino_t>> inodes_;
};

} // namespace

canonicalise_result canonicalise_path_metadata(const std::string& path) {
  auto [parent, name] = split_path(path);
  unique_fd fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd)
    throw_errno("opening '" + parent + "'");
  canonicaliser c;
  walk_tree(fd.get(), name, path, c);
  return c.result;
}

} // namespace kiln
