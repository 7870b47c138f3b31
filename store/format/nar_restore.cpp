// Restoring a NAR onto disk. Every object is created relative to an open
// directory handle with O_EXCL / O_NOFOLLOW, so a NAR can never make us
// write through a symlink, and nothing appears at the destination until the
// whole tree is complete.
#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"
#include "store/format/nar.hpp"
#include "store/io/leftovers.hpp"

#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace kiln {
namespace {

constexpr const char* staged_root = "root";

class restorer : public nar_visitor {
public:
  explicit restorer(int staging_fd) : staging_fd_(staging_fd) {}

  void begin_directory(std::string_view path, std::string_view name) override {
    auto n = entry_name(name);
    if (::mkdirat(parent(), n.c_str(), 0755) != 0)
      throw_errno("creating directory '" + shown(path) + "'");
    unique_fd fd(::openat(parent(), n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd)
      throw_errno("opening directory '" + shown(path) + "'");
    dirs_.push(std::move(fd), shown(path));
  }

  void end_directory() override { dirs_.pop("a directory being restored"); }

  void begin_regular(std::string_view path, std::string_view name, bool executable, uint64_t,
                     uint64_t) override {
    path_ = shown(path);
    file_.reset(::openat(parent(), entry_name(name).c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                         executable ? 0755 : 0644));
    if (!file_)
      throw_errno("creating file '" + path_ + "'");
  }

  void contents(const char* data, std::size_t n) override {
    write_all(file_.get(), data, n, "'" + path_ + "'");
  }

  void end_regular() override {
    if (::close(file_.release()) != 0)
      throw_errno("closing '" + path_ + "'");
  }

  void symlink(std::string_view path, std::string_view name, std::string_view target) override {
    if (::symlinkat(std::string(target).c_str(), parent(), entry_name(name).c_str()) != 0)
      throw_errno("creating symlink '" + shown(path) + "'");
  }

private:
  int parent() const { return dirs_.empty() ? staging_fd_ : dirs_.top(); }
  static std::string entry_name(std::string_view name) {
    return name.empty() ? staged_root : std::string(name);
  }
  static std::string shown(std::string_view path) {
    return path.empty() ? "/" : std::string(path);
  }

  int staging_fd_;
  dir_stack dirs_;
  unique_fd file_;
  std::string path_;
};

constexpr const char* restore_staging_prefix = ".kiln-restore-";

void remove_dead_restores_staging(int parent_fd) {
  for (auto& entry : read_directory(parent_fd, "the restore's parent directory")) {
    struct stat st;
    if (process_gone(pid_in_name(entry, restore_staging_prefix)) &&
        ::fstatat(parent_fd, entry.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
        st.st_uid == ::geteuid())
      remove_tree_at(parent_fd, entry);
  }
}

} // namespace

void restore_nar(source& in, const std::string& dest, const nar_limits& limits,
                 const std::string& staging_name) {
  if (path_exists(dest))
    throw error("cannot restore to '" + dest + "': it already exists");
  auto [parent, name] = split_path(dest);
  unique_fd parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd)
    throw_errno("opening the parent directory of '" + dest + "'");

  // Named with our pid, so the staging directories of restores that were
  // killed can be told from those of restores still running, and removed.
  if (staging_name.empty())
    remove_dead_restores_staging(parent_fd.get());
  std::string staging = staging_name.empty()
                            ? restore_staging_prefix + std::to_string(::getpid()) + "-" + name.substr(0, 64) + "-XXXXXX"
                            : staging_name;
  std::string staging_path = parent + "/" + staging;
  if (staging_name.empty() ? !::mkdtemp(staging_path.data())
                           : ::mkdirat(parent_fd.get(), staging.c_str(), 0700) != 0)
    throw_errno("creating a staging directory beside '" + dest + "'");
  staging = split_path(staging_path).second;

  try {
    unique_fd staging_fd(
      ::openat(parent_fd.get(), staging.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!staging_fd)
      throw_errno("opening the staging directory '" + staging_path + "'");
    restorer r(staging_fd.get());
    buffered_source buffered(in);
    parse_nar(buffered, r, true, limits);
    if (::renameat2(staging_fd.get(), staged_root, parent_fd.get(), name.c_str(),
                    RENAME_NOREPLACE) != 0)
      throw_errno("moving the restored tree to '" + dest + "'");
    if (::unlinkat(parent_fd.get(), staging.c_str(), AT_REMOVEDIR) != 0)
      throw_errno("removing the staging directory '" + staging_path + "'");
  } catch (...) {
    remove_tree_at(parent_fd.get(), staging);
    throw;
  }
}

} // namespace kiln
