// `nix-store --export` / `--import` streams (nix-formats.md §13): for each
// path, its NAR followed by its path, references and deriver.
#pragma once

#include "store/local/local_store.hpp"

#include <vector>

namespace kiln {

// Writes `paths` in the order given (callers pass references first, e.g.
// compute_closure's order). Every path must be valid.
void export_paths(local_store& store, const std::vector<store_path>& paths, sink& out);

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
import_result import_paths(local_store& store, source& in);

} // namespace kiln
