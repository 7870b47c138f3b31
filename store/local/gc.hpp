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




// Paths reachable from `roots` through references, plus (repeatedly) the
// outputs of live derivations with keep_outputs and the derivers of live
// paths with keep_derivations.
store_path_set live_paths(store_db& db, const store_path_set& roots, bool keep_outputs,
                          bool keep_derivations);

// Runs a collection. `progress` is called with each path deleted.
// delete_specific refuses (before deleting anything) paths that are live or
// referred to by a valid path not also being deleted.
gc_result collect_garbage(local_store& store, const gc_options& options, const gc_progress& progress = {});

} // namespace kiln
