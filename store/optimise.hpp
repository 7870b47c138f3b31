// Deduplication by hard links, as `nix-store --optimise` does it: every
// regular file in a valid path is linked to `.links/<base32 sha256 of the
// file's NAR>` in the store directory, and a file whose twin is already
// there is replaced by a link to it. The NAR of the file includes its
// executable bit, so only truly identical files are merged.
#pragma once

#include "store/local_store.hpp"

#include <cstdint>

namespace kiln {

struct optimise_result {
  uint64_t files_seen = 0;
  uint64_t files_linked = 0; // replaced by a link to an identical file
  uint64_t bytes_saved = 0;  // sizes of the replaced files whose last other name went
};

optimise_result optimise_store(local_store& store);

} // namespace kiln
