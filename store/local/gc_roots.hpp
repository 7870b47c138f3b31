// Permanent GC roots, found as Nix 2.8 finds them under the state directory
// (`gcroots` and `profiles`, searched recursively):
//   - a symlink into the store roots the store path it points into;
//   - a symlink elsewhere is an indirect root: if its target is itself a
//     symlink into the store (a `result` link), that path is rooted; an
//     indirect link under gcroots/auto whose target is gone is deleted;
//   - a regular file named like a store path roots that path.
// Only valid paths count as roots.
#pragma once

#include "store/local/local_store.hpp"

#include <map>
#include <set>
#include <string>

namespace kiln {


// `note` hears of each stale link removed, as Nix reports it.
gc_root_map find_permanent_roots(local_store& store, const gc_progress& note = {});
// The permanent roots and, as "{temp:PID}", the valid paths among `temp`
// (read_temp_roots' answer): every root, as Nix's findRoots lists them.
gc_root_map with_temp_roots(local_store& store, gc_root_map roots, const std::map<store_path, std::set<long>>& temp);

// Makes `link` a symlink to `p` (replacing whatever is there) that no
// collector can miss: `p` becomes a temp root first, and the link is made
// holding gc.lock shared, so a collection that may have scanned the roots
// already finishes first. Nix 2.8's collector reads permanent roots before
// temp roots; without the lock, a process that links and exits in between
// would lose its path. `link` is usually under gcroots/.
void add_permanent_root(local_store& store, const std::string& link, const store_path& p);

// Registers `link` (a symlink into the store elsewhere, like ./result) as
// an indirect root: gcroots/auto/<base32 SHA-1 of its absolute path>,
// named as Nix names it. Returns the auto/ link's path.
std::string add_indirect_root(local_store& store, const std::string& link);

// The store path `target` points into, if it is inside the store (given
// either as /nix/store/... or by its real location).
std::optional<store_path> store_path_of_target(const local_store& store, const std::string& target);

} // namespace kiln
