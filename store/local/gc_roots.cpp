#include "store/local/gc_roots.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_lock.hpp"
#include "store/io/file_ops.hpp"
#include "store/local/temp_roots.hpp"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln {
namespace {

std::optional<std::string> read_link(const std::string& path) {
  std::string buf(4096, '\0');
  ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
  if (n < 0) {
    if (errno == ENOENT || errno == EINVAL)
      return std::nullopt;
    throw_errno("reading the link '" + path + "'");
  }
  buf.resize(static_cast<std::size_t>(n));
  return buf;
}

bool is_under(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

class root_finder {
public:
  root_finder(local_store& store, gc_root_map& roots, const gc_progress& note)
    : store_(store), roots_(roots), note_(note) {}

  void search(const std::string& path, int depth) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) {
      if (errno == ENOENT)
        return; // removed while we looked
      throw_errno("getting the status of the root '" + path + "'");
    }
    if (S_ISDIR(st.st_mode)) {
      if (depth > 64)
        throw error("the GC root directory '" + path + "' is nested too deeply");
      unique_fd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!dir) {
        if (errno == ENOENT)
          return;
        throw_errno("opening the GC root directory '" + path + "'");
      }
      for (auto& name : read_directory(dir.get(), path))
        search(path + "/" + name, depth + 1);
    } else if (S_ISLNK(st.st_mode)) {
      symlink_root(path);
    } else if (S_ISREG(st.st_mode)) {
      try {
        found(path, store_path::from_base_name(split_path(path).second));
      } catch (const format_error&) {
        // an ordinary file among the roots roots nothing
      }
    }
  }

private:
  void symlink_root(const std::string& link) {
    auto target = read_link(link);
    if (!target)
      return;
    if (auto p = store_path_of_target(store_, *target)) {
      found(link, *p);
      return;
    }
    // An indirect root: the link points at a link (e.g. ./result) elsewhere.
    std::string abs = (*target)[0] == '/' ? *target : split_path(link).first + "/" + *target;
    struct stat st;
    if (::lstat(abs.c_str(), &st) != 0) {
      if (errno != ENOENT && errno != ENOTDIR)
        throw_errno("getting the status of '" + abs + "'");
      if (is_under(link, store_.layout().gcroots_dir() + "/auto")) {
        // Its target is gone for good: a stale registration.
        if (note_)
          note_("removing stale link from '" + link + "' to '" + abs + "'");
        ::unlink(link.c_str());
      }
      return;
    }
    if (!S_ISLNK(st.st_mode))
      return;
    if (auto final_target = read_link(abs))
      if (auto p = store_path_of_target(store_, *final_target))
        found(abs, *p);
  }

  void found(const std::string& link, const store_path& p) {
    if (store_.db().is_valid(p))
      roots_[p].insert(link);
  }

  local_store& store_;
  gc_root_map& roots_;
  const gc_progress& note_;
};

} // namespace

std::optional<store_path> store_path_of_target(const local_store& store, const std::string& target) {
  for (const std::string& dir : {std::string(default_store_dir), store.layout().store_dir()}) {
    if (!is_under(target, dir))
      continue;
    std::string rest = target.substr(dir.size() + 1);
    try {
      return store_path::from_base_name(rest.substr(0, rest.find('/')));
    } catch (const format_error&) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

namespace {

// Replaces whatever is at `link` with a symlink to `target`, atomically.
void replace_symlink(const std::string& target, const std::string& link) {
  std::string temp = link + ".kiln-new-" + std::to_string(::getpid());
  ::unlink(temp.c_str());
  if (::symlink(target.c_str(), temp.c_str()) != 0)
    throw_errno("creating the link '" + temp + "'");
  if (::rename(temp.c_str(), link.c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    throw sys_error("moving the link into place at '" + link + "'", err);
  }
}

} // namespace

void add_permanent_root(local_store& store, const std::string& link, const store_path& p) {
  store.add_temp_root(p);
  std::string lock_path = gc_lock_path(store.layout().state_dir());
  unique_fd gc_lock = open_lock_file(lock_path);
  lock_file(gc_lock.get(), lock_kind::shared, true, lock_path);
  replace_symlink(p.full(), link);
}

std::string add_indirect_root(local_store& store, const std::string& link) {
  // The link's own directory resolved, the link itself not (it is what
  // gets rewritten when the user rebuilds).
  auto [parent, name] = split_path(link);
  char resolved[PATH_MAX];
  if (!::realpath(parent.c_str(), resolved))
    throw_errno("resolving the directory of '" + link + "'");
  std::string abs = std::string(resolved) + (resolved[1] ? "/" : "") + name;
  std::string dir = store.layout().gcroots_dir() + "/auto";
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    throw_errno("creating '" + dir + "'");
  std::string auto_link = dir + "/" + hash_string(hash_algo::sha1, abs).to_string(hash_format::base32);
  replace_symlink(abs, auto_link);
  return auto_link;
}

gc_root_map find_permanent_roots(local_store& store, const gc_progress& note) {
  gc_root_map roots;
  root_finder finder(store, roots, note);
  finder.search(store.layout().gcroots_dir(), 0);
  finder.search(store.layout().profiles_dir(), 0);
  return roots;
}

gc_root_map with_temp_roots(local_store& store, gc_root_map roots, const std::map<store_path, std::set<long>>& temp) {
  for (auto& [p, pids] : temp)
    if (store.db().is_valid(p))
      for (long pid : pids)
        roots[p].insert("{temp:" + std::to_string(pid) + "}");
  return roots;
}

} // namespace kiln
