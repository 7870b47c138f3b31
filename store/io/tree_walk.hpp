// Walking directory trees of any depth: without recursion (a tree is data a
// build or a NAR chose, and must not choose our stack depth) and without
// a file descriptor per level (the innermost few stay open; outer ones are
// reopened through ".." on the way back up, checked to be the same inode).
// Every tree walk in the store goes through here.
#pragma once

#include "store/io/fd.hpp"

#include <sys/stat.h>

#include <cstddef>
#include <string>
#include <vector>

namespace kiln {

// How deep a tree may be: far beyond what ordinary paths reach (PATH_MAX
// allows ~2,000 levels), low enough that a deliberate monster fails with a
// clear error instead of exhausting memory.
inline constexpr std::size_t max_tree_depth = 1 << 16;

// The directories open on the way down a tree; the innermost `window` of
// them stay open.
class dir_stack {
public:
  static constexpr std::size_t window = 32;

  std::size_t size() const { return dirs_.size(); }
  bool empty() const { return dirs_.empty(); }
  // `fd` is an open directory; `shown` names it in errors.
  void push(unique_fd fd, const std::string& shown);
  int top() const { return dirs_.back().fd.get(); }
  // Removes the innermost directory and returns its descriptor, after
  // making sure the one now on top is open. Throws if the directory above
  // it is no longer the one it was (renamed away during the walk).
  unique_fd pop(const std::string& shown);

private:
  struct level {
    unique_fd fd;
    dev_t dev;
    ino_t ino;
  };
  std::vector<level> dirs_;
};

// One object met by walk_tree.
struct tree_entry {
  int dirfd;               // the directory holding it
  const std::string& name; // its name there
  const struct stat& st;   // its lstat
  const std::string& path; // shown in errors: the root's shown path, "/", names
  std::size_t depth;       // 0 for the root
};

class tree_visitor {
public:
  virtual ~tree_visitor() = default;
  // Every object, a directory before its entries. For a directory, returns
  // it opened (O_DIRECTORY) to walk its entries, or nothing to skip them.
  virtual unique_fd visit(const tree_entry& e) = 0;
  // A directory whose entries have been walked; `fd` is what visit() gave.
  virtual void leave(const tree_entry&, int /*fd*/) {}
  // Puts a directory's entry names in the order to walk them (default: as read).
  virtual void order(std::vector<std::string>&) {}
  // Called before an entry of a directory and after it (NAR framing).
  virtual void begin_entry(const std::string& /*name*/) {}
  virtual void end_entry() {}
  // Whether an entry that vanished between listing and lstat is passed
  // over (a walk of a tree still being written) rather than an error.
  virtual bool skips_vanished() const { return false; }
};

// Opens a directory met on a walk to walk its entries (never through a
// symlink); throws naming it.
unique_fd open_walked_directory(const tree_entry& e);

// Walks the object `name` in `dirfd`, shown as `shown`. Throws what the
// visitor throws, and for trees deeper than `max_depth` (removal passes no
// bound: whatever a build left must be removable).
void walk_tree(int dirfd, const std::string& name, const std::string& shown, tree_visitor& v,
               std::size_t max_depth = max_tree_depth);

} // namespace kiln
