// `nix-store --export` / `--import` streams (nix-formats.md §13): for each
// path, its NAR followed by its path, references and deriver.
#pragma once

#include "store/store.hpp"

#include <string>

#include <vector>

namespace kiln {

// Writes `paths` in the order given (callers pass references first, e.g.
// compute_closure's order). Every path must be valid. Any store: a local
// one, or a daemon's (its NAR of each path).
void export_paths(store& store, const std::vector<store_path>& paths, sink& out);

struct import_result {
  std::vector<store_path> imported;
  // Paths the store refused (a derivation that does not parse, a reference
  // that is neither valid nor imported earlier), each with the reason. The
  // stream goes on past them: one bad entry costs only itself and what
  // refers to it.
  std::vector<std::pair<store_path, std::string>> refused;
};

// Adds every path in the stream, in order, each atomically. The NAR hash
// and size are computed from the stream, never trusted. A malformed stream
// (framing, NAR) stops the import there, naming the entry and offset.
// Each NAR waits in an unnamed file in `spool_dir` until it is checked.
import_result import_paths(store& store, source& in, const std::string& spool_dir);

} // namespace kiln
