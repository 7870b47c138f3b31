#include "store/local/optimise.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"
#include "store/io/leftovers.hpp"
#include "store/format/nar.hpp"
#include "store/io/tree_walk.hpp"

#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln {
namespace {

constexpr const char* temp_prefix = ".tmp-link-";

// Temporary links of optimisers that died (their pid is gone) are removed;
// those of a live one are its work in progress.
void remove_stale_temp_links(const std::string& store_dir) {
  unique_fd fd(::open(store_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd)
    throw_errno("opening '" + store_dir + "'");
  for (auto& name : read_directory(fd.get(), store_dir)) {
    if (process_gone(pid_in_name(name, temp_prefix)))
      ::unlinkat(fd.get(), name.c_str(), 0);
  }
}

class optimiser : public tree_visitor {
public:
  optimiser(local_store& store, const std::function<void(optimise_step)>& at_step)
      : store_(store), store_dir_(store.layout().store_dir()), links_(store_dir_ + "/.links"), at_step_(at_step) {
    if (::mkdir(links_.c_str(), 0755) != 0 && errno != EEXIST)
      throw_errno("creating '" + links_ + "'");
    remove_stale_temp_links(store_dir_);
  }

  void path(const store_path& p) {
    std::string real = store_.real_path(p);
    walk_tree(AT_FDCWD, real, real, *this);
  }
  optimise_result result;

  unique_fd visit(const tree_entry& e) override {
    if (S_ISDIR(e.st.st_mode))
      return open_walked_directory(e);
    if (S_ISREG(e.st.st_mode)) {
      ++result.files_seen;
      link_file(e);
    }
    return {};
  }

  // A directory a killed run left opened up is closed again.
  void leave(const tree_entry& e, int fd) override {
    if ((e.st.st_mode & 07777) != 0555 || e.st.st_mtime != 1) {
      close_directory(fd, e.path);
      ++result.repaired;
    }
  }

private:
  void step(optimise_step s) {
    if (at_step_)
      at_step_(s);
  }

  void link_file(const tree_entry& e) {
    hash_sink h(hash_algo::sha256);
    dump_path_at(e.dirfd, e.name, e.path, h);
    std::string link = links_ + "/" + h.finish().base32();
    if (::linkat(e.dirfd, e.name.c_str(), AT_FDCWD, link.c_str(), 0) == 0) {
      step(optimise_step::linked_shared);
      return; // the first of its kind: now it is the shared copy
    }
    if (errno != EEXIST)
      throw_errno("linking '" + e.path + "' into '" + links_ + "'");
    struct stat lst;
    if (::lstat(link.c_str(), &lst) != 0)
      throw_errno("getting the status of '" + link + "'");
    if (lst.st_ino == e.st.st_ino && lst.st_dev == e.st.st_dev)
      return; // already shared
    replace_with_link(e, link);
  }

  // Canonical metadata of a directory inside a store path.
  static void close_directory(int fd, const std::string& shown) {
    if (::fchmod(fd, 0555) != 0)
      throw_errno("making '" + shown + "' read-only again");
    struct timespec times[2] = {{1, 0}, {1, 0}};
    if (::futimens(fd, times) != 0)
      throw_errno("resetting the times of '" + shown + "'");
  }

  // Links `link` under a temporary name in the store directory, then renames
  // it over the file: at no moment is the file absent, and nothing but the
  // file's own inode ever appears inside the path. The parent directory is
  // read-only (canonical), so it is opened up briefly and closed again.
  void replace_with_link(const tree_entry& e, const std::string& link) {
    const bool top = e.depth == 0;
    if (!top) {
      if (::fchmod(e.dirfd, 0755) != 0)
        throw_errno("making the directory of '" + e.path + "' writable");
      step(optimise_step::opened_directory);
    }
    std::string temp = store_dir_ + "/" + temp_prefix + std::to_string(::getpid()) + "-" + std::to_string(++temps_);
    int err = 0;
    if (::link(link.c_str(), temp.c_str()) != 0) {
      err = errno;
    } else {
      step(optimise_step::made_temp_link);
      if (::renameat(AT_FDCWD, temp.c_str(), e.dirfd, e.name.c_str()) != 0) {
        err = errno;
        ::unlink(temp.c_str());
      } else {
        step(optimise_step::renamed);
      }
    }
    if (!top) {
      close_directory(e.dirfd, "the directory of '" + e.path + "'"); // the rename touched it
      step(optimise_step::closed_directory);
    }
    if (err != 0)
      throw sys_error("replacing '" + e.path + "' with a link to '" + link + "'", err);
    ++result.files_linked;
    if (e.st.st_nlink == 1)
      result.bytes_saved += static_cast<uint64_t>(e.st.st_size);
  }

  local_store& store_;
  std::string store_dir_;
  std::string links_;
  const std::function<void(optimise_step)>& at_step_;
  uint64_t temps_ = 0;
};

} // namespace

optimise_result optimise_store(local_store& store, const std::function<void(optimise_step)>& at_step) {
  optimiser o(store, at_step);
  for (auto& p : store.db().query_all_valid_paths())
    o.path(p);
  return o.result;
}

} // namespace kiln
