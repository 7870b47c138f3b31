// Deduplication by hard links, as `nix-store --optimise` does it: every
// regular file in a valid path is linked to `.links/<base32 sha256 of the
// file's NAR>` in the store directory, and a file whose twin is already
// there is replaced by a link to it. The NAR of the file includes its
// executable bit, so only truly identical files are merged.
//
// Crash safety: a file is replaced by renaming a temporary link over it, and
// that temporary lives in the store directory itself (`.tmp-link-<pid>-<n>`,
// as Nix's does), never inside a store path, so a kill at any step leaves
// every valid path with its exact contents. The one trace a kill can leave in
// a path is its parent directory still opened up (writable, new mtime); the
// next run puts every directory it walks back to canonical metadata and
// removes the temporary links of optimisers that are gone.
#pragma once

#include "store/local/local_store.hpp"

#include <cstdint>
#include <functional>

namespace kiln {


// The steps of replacing one file, in order: where a test may kill the run.
enum class optimise_step {
  linked_shared,    // the first copy of some content was linked into .links
  opened_directory, // the file's parent was made writable
  made_temp_link,   // the temporary link to the shared copy exists
  renamed,          // the temporary link replaced the file
  closed_directory, // the parent's canonical mode and mtime are back
};

optimise_result optimise_store(local_store& store,
                               const std::function<void(optimise_step)>& at_step = {});

} // namespace kiln
