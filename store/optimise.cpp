#include "store/optimise.hpp"

#include "store/error.hpp"
#include "store/fd.hpp"
#include "store/file_ops.hpp"
#include "store/nar.hpp"

#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln {
namespace {

class optimiser {
public:
  optimiser(local_store& store) : store_(store), links_(store.layout().store_dir() + "/.links") {
    if (::mkdir(links_.c_str(), 0755) != 0 && errno != EEXIST)
      throw_errno("creating '" + links_ + "'");
  }

  void path(const store_path& p) { visit(store_.real_path(p)); }
  optimise_result result;

private:
  void visit(const std::string& file) {
    struct stat st;
    if (::lstat(file.c_str(), &st) != 0)
      throw_errno("getting the status of '" + file + "'");
    if (S_ISDIR(st.st_mode)) {
      unique_fd fd(::open(file.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd)
        throw_errno("opening '" + file + "'");
      for (auto& child : read_directory(fd.get(), file))
        visit(file + "/" + child);
    } else if (S_ISREG(st.st_mode)) {
      ++result.files_seen;
      link_file(file, st);
    }
  }

  void link_file(const std::string& file, const struct stat& st) {
    hash_sink h(hash_algo::sha256);
    dump_path(file, h);
    std::string link = links_ + "/" + h.finish().base32();
    if (::link(file.c_str(), link.c_str()) == 0)
      return; // the first of its kind: now it is the shared copy
    if (errno != EEXIST)
      throw_errno("linking '" + file + "' into '" + links_ + "'");
    struct stat lst;
    if (::lstat(link.c_str(), &lst) != 0)
      throw_errno("getting the status of '" + link + "'");
    if (lst.st_ino == st.st_ino && lst.st_dev == st.st_dev)
      return; // already shared
    replace_with_link(file, link, st);
  }

  // Links `link` in beside `file` under a temporary name, then renames it
  // over `file`: at no moment is the file absent. The parent directory is
  // read-only (canonical), so it is opened up briefly and restored.
  void replace_with_link(const std::string& file, const std::string& link, const struct stat& st) {
    auto [dir, name] = split_path(file);
    bool in_path = dir != store_.layout().store_dir(); // not a top-level file path
    struct stat dst;
    if (::stat(dir.c_str(), &dst) != 0)
      throw_errno("getting the status of '" + dir + "'");
    bool opened = in_path && (dst.st_mode & S_IWUSR) == 0;
    if (opened && ::chmod(dir.c_str(), dst.st_mode | S_IWUSR) != 0)
      throw_errno("making '" + dir + "' writable");
    std::string temp = dir + "/.kiln-link-" + std::to_string(::getpid());
    ::unlink(temp.c_str());
    int err = 0;
    if (::link(link.c_str(), temp.c_str()) != 0 || ::rename(temp.c_str(), file.c_str()) != 0)
      err = errno;
    ::unlink(temp.c_str());
    if (opened)
      ::chmod(dir.c_str(), dst.st_mode & 07777);
    struct timespec times[2] = {{1, 0}, {1, 0}}; // the rename touched the directory
    if (in_path)
      ::utimensat(AT_FDCWD, dir.c_str(), times, AT_SYMLINK_NOFOLLOW);
    if (err != 0)
      throw sys_error("replacing '" + file + "' with a link to '" + link + "'", err);
    ++result.files_linked;
    if (st.st_nlink == 1)
      result.bytes_saved += static_cast<uint64_t>(st.st_size);
  }

  local_store& store_;
  std::string links_;
};

} // namespace

optimise_result optimise_store(local_store& store) {
  optimiser o(store);
  for (auto& p : store.db().query_all_valid_paths())
    o.path(p);
  return o.result;
}

} // namespace kiln
