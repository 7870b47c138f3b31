// `nix-store --export` / `--import` streams (nix-formats.md §13): for each
// path, its NAR followed by its path, references and deriver.
#pragma once

#include "store/local_store.hpp"

#include <vector>

namespace kiln {

// Writes `paths` in the order given (callers pass references first, e.g.
// compute_closure's order). Every path must be valid.
void export_paths(local_store& store, const std::vector<store_path>& paths, sink& out);

// Adds every path in the stream, in order, each atomically; a path whose
// references are neither valid nor earlier in the stream is refused. The
// NAR hash and size are computed from the stream, never trusted. Returns
// the imported paths. Malformed streams fail naming the entry and offset.
std::vector<store_path> import_paths(local_store& store, source& in);

} // namespace kiln
