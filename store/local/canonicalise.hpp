// Canonical metadata for finished store paths (nix-formats.md §9): every
// file read-only (0444, or 0555 if owner-executable; directories 0555),
// no setuid/setgid/sticky, mtime and atime 1, no extended attributes, owned
// by the store's owner. Only content then distinguishes two paths, so their
// NARs and hashes are reproducible.
#pragma once

#include <string>
#include <sys/types.h>

namespace kiln {

struct canonicalise_result {
  std::size_t objects = 0;        // files, directories and symlinks visited
  std::size_t hard_links_seen = 0; // extra names of an inode already done
};

// Canonicalises `path` and everything below it without following symlinks.
// Files owned by anyone other than the effective uid are chowned to it;
// if that is not permitted, it fails naming the file and its owner.
canonicalise_result canonicalise_path_metadata(const std::string& path);

} // namespace kiln
