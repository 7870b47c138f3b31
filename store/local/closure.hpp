// Closures over the reference graph of valid paths.
#pragma once

#include "store/local/store_db.hpp"

#include <string>
#include <vector>

namespace kiln {

// Every path reachable from `roots` through references (or, with
// `referrers`, through referrers), roots included, in topological order:
// a path comes after everything it references. Throws if a root is invalid.
std::vector<store_path> compute_closure(store_db& db, const store_path_set& roots,
                                        bool referrers = false);

// What exportReferencesGraph exports, as Nix 2.8 computes it: the closure
// of `paths`, each of which must be in the derivation's `input_closure`
// (anything else would be an impurity: throws naming it), and, for every
// derivation in that closure, the closures of its outputs.
store_path_set export_references(store_db& db, const store_path_set& paths, const store_path_set& input_closure);

// `paths` (already closed) in Nix's "validity registration" text as
// exportReferencesGraph writes it: for each path (sorted), the path, an
// empty line where the deriver would be, the reference count, the references.
std::string reference_graph_text(store_db& db, const store_path_set& paths);

// The same under structured attributes, as JSON: one object per path with
// path, narHash, narSize, references, ca (if any) and closureSize.
std::string reference_graph_json(store_db& db, const store_path_set& paths);

} // namespace kiln
