// Closures over the reference graph of valid paths.
#pragma once

#include "store/store_db.hpp"

#include <string>
#include <vector>

namespace kiln {

// Every path reachable from `roots` through references (or, with
// `referrers`, through referrers), roots included, in topological order:
// a path comes after everything it references. Throws if a root is invalid.
std::vector<store_path> compute_closure(store_db& db, const store_path_set& roots,
                                        bool referrers = false);

// The closure of `paths` in Nix's "validity registration" text, which
// exportReferencesGraph hands to builders: for each path (sorted), its
// path, its deriver (or an empty line), its reference count and references.
std::string reference_graph_text(store_db& db, const store_path_set& paths);

} // namespace kiln
