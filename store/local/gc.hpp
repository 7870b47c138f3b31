// Garbage collection, coordinated with other processes as Nix 2.8 does it
// (temp_roots.hpp): the collector holds gc.lock exclusively from start to
// end, reads permanent and temp roots, serves gc-socket/socket for roots
// that arrive meanwhile, and deletes what is outside the live closure,
// referrers before references, each path invalidated before its files go
// (so a crash leaves an invalid leftover, never a valid path with missing
// files).
#pragma once

#include "store/local/gc_roots.hpp"
#include "store/local/local_store.hpp"

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace kiln {

enum class gc_action { print_roots, print_live, print_dead, delete_dead, delete_specific };

struct gc_options {
  gc_action action = gc_action::delete_dead;
  store_path_set paths;            // for delete_specific
  uint64_t max_freed = std::numeric_limits<uint64_t>::max();
  bool keep_outputs = false;       // outputs of live derivations are live
  bool keep_derivations = true;    // derivers of live paths are live
};

struct gc_result {
  // The live or dead paths (printing), or what was deleted, sorted; paths
  // in the store directory that were never valid are included as /nix/store/NAME.
  std::vector<std::string> paths;
  gc_root_map roots;                  // permanent and temporary ("{temp:PID}")
  uint64_t bytes_freed = 0;
  std::size_t links_removed = 0;      // unused .links entries
  std::size_t roots_from_socket = 0;  // temp roots other processes sent while it ran
};

// Paths reachable from `roots` through references, plus (repeatedly) the
// outputs of live derivations with keep_outputs and the derivers of live
// paths with keep_derivations.
store_path_set live_paths(store_db& db, const store_path_set& roots, bool keep_outputs,
                          bool keep_derivations);

// Runs a collection. `progress` is called with each path deleted.
// delete_specific refuses (before deleting anything) paths that are live or
// referred to by a valid path not also being deleted.
gc_result collect_garbage(local_store& store, const gc_options& options,
                          const std::function<void(const std::string&)>& progress = {});

} // namespace kiln
