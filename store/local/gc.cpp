#include "store/local/gc.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_lock.hpp"
#include "store/io/file_ops.hpp"
#include "store/local/gc_root_server.hpp"
#include "store/local/path_lock.hpp"
#include "store/local/temp_roots.hpp"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln {
namespace {

std::string logical_path(const std::string& name) {
  return std::string(default_store_dir) + "/" + name;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// `paths` ordered so that each comes before everything it references
// (within `paths`): a reverse post-order over references, without recursion.
std::vector<store_path> referrers_first(store_db& db, const store_path_set& paths) {
  std::vector<store_path> post;
  std::set<store_path> seen;
  for (auto& start : paths) {
    if (!seen.insert(start).second)
      continue;
    std::vector<std::pair<store_path, std::vector<store_path>>> stack;
    auto push = [&](const store_path& p) {
      std::vector<store_path> refs;
      for (auto& r : db.query_references(p))
        if (r != p && paths.count(r))
          refs.push_back(r);
      stack.emplace_back(p, std::move(refs));
    };
    push(start);
    while (!stack.empty()) {
      auto& [p, refs] = stack.back();
      if (refs.empty()) {
        post.push_back(p);
        stack.pop_back();
        continue;
      }
      store_path next = refs.back();
      refs.pop_back();
      if (seen.insert(next).second)
        push(next);
    }
  }
  std::reverse(post.begin(), post.end());
  return post;
}

class collector {
public:
  collector(local_store& store, const gc_options& options,
            const gc_progress& progress)
    : store_(store), db_(store.db()), options_(options), progress_(progress) {}

  gc_result run() {
    const auto& layout = store_.layout();
    unique_fd gc_lock = open_lock_file(gc_lock_path(layout.state_dir()));
    lock_file(gc_lock.get(), lock_kind::exclusive, true, gc_lock_path(layout.state_dir()));

    // From here on, new temp roots come through the socket.
    std::string socket_dir = split_path(gc_socket_path(layout.state_dir())).first;
    if (::mkdir(socket_dir.c_str(), 0755) != 0 && errno != EEXIST)
      throw_errno("creating '" + socket_dir + "'");
    // Temp roots before permanent ones: a process that makes a root link
    // and exits is then either alive when its temp roots are read, or its
    // link exists before the gcroots scan. (Nix 2.8 reads them the other
    // way round; add_permanent_root covers that case.)
    say("finding garbage collector roots...");
    auto temp = read_temp_roots(layout.temproots_dir(), std::string(default_store_dir));
    result_.roots = with_temp_roots(store_, find_permanent_roots(store_, progress_), temp);
    std::set<std::string> rooted_hashes;
    for (auto& [p, pids] : temp)
      rooted_hashes.insert(std::string(p.hash_part()));
    gc_root_server server(gc_socket_path(layout.state_dir()), std::string(default_store_dir),
                          rooted_hashes);
    server_ = &server;

    store_path_set root_set;
    for (auto& [p, links] : result_.roots)
      root_set.insert(p);
    if (options_.action != gc_action::print_roots && options_.action != gc_action::delete_specific)
      say(options_.action == gc_action::delete_dead ? "deleting garbage..." : "determining live/dead paths...");
    live_ = live_paths(db_, root_set, options_.keep_outputs, options_.keep_derivations);

    switch (options_.action) {
    case gc_action::print_roots:
      break;
    case gc_action::print_live:
      for (auto& p : live_)
        result_.paths.push_back(p.full());
      break;
    case gc_action::print_dead:
      for (auto& p : dead_valid_paths())
        result_.paths.push_back(p.full());
      for (auto& name : store_directory_entries())
        if (auto p = invalid_entry(name); p && !server.is_root(*p))
          result_.paths.push_back(logical_path(name));
        else if (free_lock_file(name))
          result_.paths.push_back(logical_path(name));
      break;
    case gc_action::delete_dead:
      delete_valid(dead_valid_paths());
      if (!budget_spent())
        delete_invalid_entries();
      remove_unused_links();
      break;
    case gc_action::delete_specific:
      delete_specific();
      remove_unused_links();
      break;
    }
    result_.roots_from_socket = server.received();
    server_ = nullptr;
    std::sort(result_.paths.begin(), result_.paths.end());
    return result_;
  }

private:
  store_path_set dead_valid_paths() {
    store_path_set dead;
    for (auto& p : db_.query_all_valid_paths())
      if (!live_.count(p))
        dead.insert(p);
    return dead;
  }

  bool budget_spent() const { return result_.bytes_freed >= options_.max_freed; }

  // Once a path must stay, so must everything it references.
  void keep_with_references(const store_path& p) {
    std::vector<store_path> todo{p};
    while (!todo.empty()) {
      store_path q = todo.back();
      todo.pop_back();
      if (!kept_.insert(q).second)
        continue;
      for (auto& r : db_.query_references(q))
        todo.push_back(r);
    }
  }

  void say(const std::string& line) {
    if (progress_)
      progress_(line);
  }

  void deleted(const std::string& logical, uint64_t bytes) {
    result_.bytes_freed += bytes;
    result_.paths.push_back(logical);
    say("deleting '" + logical + "'");
  }

  // Deletes valid paths, referrers first. Returns the paths that stayed.
  store_path_set delete_valid(const store_path_set& paths) {
    store_path_set stayed;
    for (auto& p : referrers_first(db_, paths)) {
      if (budget_spent() || kept_.count(p) || !server_->claim_for_deletion(p)) {
        keep_with_references(p);
        stayed.insert(p);
        continue;
      }
      try {
        // A valid referrer registered meanwhile makes this throw: the path stays.
        db_.invalidate_path(p);
      } catch (const error&) {
        server_->finish_deletion();
        keep_with_references(p);
        stayed.insert(p);
        continue;
      }
      uint64_t bytes = 0;
      try {
        bytes = remove_tree(store_.real_path(p));
      } catch (...) {
        server_->finish_deletion(); // invalid now: the next collection finishes the job
        throw;
      }
      server_->finish_deletion();
      deleted(p.full(), bytes);
    }
    return stayed;
  }

  std::vector<std::string> store_directory_entries() {
    const std::string dir = store_.layout().store_dir();
    unique_fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd)
      throw_errno("opening '" + dir + "'");
    return read_directory(fd.get(), dir);
  }

  // A store-directory entry that is named like a store path but is not a
  // valid one: an interrupted build or add, or a Kiln temporary (named by
  // its target's hash part, so its adder's temp root protects it). Dot
  // names and names that are no store path are left to their owners.
  std::optional<store_path> invalid_entry(const std::string& name) {
    if (name[0] == '.' || ends_with(name, ".lock"))
      return std::nullopt;
    try {
      auto p = store_path::from_base_name(name);
      if (!db_.is_valid(p))
        return p;
    } catch (const format_error&) {
    }
    return std::nullopt;
  }

  // One pass over the store directory: invalid entries, then lock files
  // nobody holds (deleted through the lock protocol, so a waiter that had
  // opened one retries).
  void delete_invalid_entries() {
    auto entries = store_directory_entries();
    for (auto& name : entries) {
      if (budget_spent())
        return;
      if (auto p = invalid_entry(name))
        delete_invalid(name, *p);
    }
    for (auto& name : entries)
      if (name[0] != '.' && ends_with(name, ".lock"))
        remove_lock_file_if_free(name);
  }

  // An invalid path is being built or added if it is a temp root or its
  // lock is held; otherwise it is debris.
  bool delete_invalid(const std::string& name, const store_path& p) {
    if (!server_->claim_for_deletion(p))
      return false;
    std::string real = store_.layout().store_dir() + "/" + name;
    auto lock = path_lock::try_acquire(real);
    bool gone = false;
    if (lock.held() && !db_.is_valid(p)) {
      deleted(logical_path(name), remove_tree(real));
      gone = true;
    }
    lock.release(true);
    server_->finish_deletion();
    return gone;
  }

  // A lock file nobody holds (a failed build leaves its own, as Nix's
  // does) is dead, as Nix counts it; a held one belongs to a build.
  bool free_lock_file(const std::string& name) {
    if (name[0] == '.' || !ends_with(name, ".lock"))
      return false;
    try {
      if (db_.is_valid(store_path::from_base_name(name)))
        return false; // a valid path that happens to be named *.lock
    } catch (const format_error&) {
      return false;
    }
    return path_lock::try_acquire(lock_owner(name)).held();
  }

  void remove_lock_file_if_free(const std::string& name) {
    if (!free_lock_file(name))
      return;
    auto lock = path_lock::try_acquire(lock_owner(name));
    if (!lock.held())
      return;
    lock.release(true);
    deleted(logical_path(name), 0);
  }

  std::string lock_owner(const std::string& lock_name) const {
    return store_.layout().store_dir() + "/" + lock_name.substr(0, lock_name.size() - 5);
  }

  void remove_unused_links() {
    say("deleting unused links...");
    char line[96];
    std::snprintf(line, sizeof line, "note: currently hard linking saves %.2f MiB",
                  static_cast<double>(remove_unused_link_files()) / (1024.0 * 1024.0));
    say(line);
  }

  // Removes the .links entries no store file shares any more; returns what
  // the remaining ones save, as Nix reports it (every name of a linked file
  // but one would otherwise be a copy).
  uint64_t remove_unused_link_files() {
    uint64_t saved = 0;
    const std::string dir = store_.layout().store_dir() + "/.links";
    unique_fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) {
      if (errno == ENOENT)
        return 0;
      throw_errno("opening '" + dir + "'");
    }
    for (auto& name : read_directory(fd.get(), dir)) {
      struct stat st;
      if (::fstatat(fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        continue;
      if (st.st_nlink != 1) {
        saved += static_cast<uint64_t>(st.st_size) * (st.st_nlink - 2);
        continue;
      }
      if (::unlinkat(fd.get(), name.c_str(), 0) != 0) {
        if (errno == ENOENT)
          continue;
        throw_errno("removing '" + dir + "/" + name + "'");
      }
      result_.bytes_freed += static_cast<uint64_t>(st.st_size);
      ++result_.links_removed;
    }
    return saved;
  }

  std::string why_live(const store_path& p) {
    auto r = result_.roots.find(p);
    if (r != result_.roots.end())
      return "it is a root (" + *r->second.begin() + ")";
    return "it is reachable from a root";
  }

  void delete_specific() {
    store_path_set valid;
    std::vector<store_path> invalid;
    for (auto& p : options_.paths) {
      if (db_.is_valid(p)) {
        if (live_.count(p))
          throw error("cannot delete '" + p.full() + "': " + why_live(p));
        for (auto& r : db_.query_referrers(p))
          if (r != p && !options_.paths.count(r))
            throw error("cannot delete '" + p.full() + "': '" + r.full() +
                        "' refers to it (delete that too)");
        valid.insert(p);
      } else if (path_exists(store_.real_path(p))) {
        if (server_->is_root(p))
          throw error("cannot delete '" + p.full() + "': a running process holds it as a temp root");
        invalid.push_back(p);
      } else {
        throw error("cannot delete '" + p.full() + "': it is not in the store");
      }
    }
    store_path_set stayed = delete_valid(valid);
    for (auto& p : invalid)
      if (!delete_invalid(std::string(p.base_name()), p))
        stayed.insert(p);
    if (!stayed.empty())
      throw error("'" + stayed.begin()->full() +
                  "' was not deleted: another process started using it meanwhile");
  }

  local_store& store_;
  store_db& db_;
  const gc_options& options_;
  const gc_progress& progress_;
  gc_root_server* server_ = nullptr;
  store_path_set live_, kept_;
  gc_result result_;
};

} // namespace

store_path_set live_paths(store_db& db, const store_path_set& roots, bool keep_outputs,
                          bool keep_derivations) {
  store_path_set live;
  std::vector<store_path> todo(roots.begin(), roots.end());
  while (!todo.empty()) {
    store_path p = todo.back();
    todo.pop_back();
    if (!live.insert(p).second)
      continue;
    for (auto& r : db.query_references(p))
      todo.push_back(r);
    if (keep_outputs && p.is_derivation())
      for (auto& [name, out] : db.query_derivation_outputs(p))
        if (db.is_valid(out))
          todo.push_back(out);
    if (keep_derivations) {
      auto info = db.query_path_info(p);
      if (info && info->deriver && db.is_valid(*info->deriver)) {
        // Only a deriver that really lists this path among its outputs.
        for (auto& [name, out] : db.query_derivation_outputs(*info->deriver))
          if (out == p)
            todo.push_back(*info->deriver);
      }
    }
  }
  return live;
}

gc_result collect_garbage(local_store& store, const gc_options& options,
                          const gc_progress& progress) {
  return collector(store, options, progress).run();
}

} // namespace kiln
