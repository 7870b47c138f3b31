// A binary cache's descriptions (nix-formats.md §11): a path's .narinfo
// and the cache's nix-cache-info. Parsed strictly, since they come from
// whoever runs the cache: every error names the line and the field.
// Printed in the order Nix writes them, so a narinfo read and written
// again is the same bytes.
#pragma once

#include "store/format/path_info.hpp"

#include <string>
#include <string_view>

namespace kiln {

struct narinfo {
  store_path path;
  std::string url;                   // of the (compressed) NAR, relative to the cache
  std::string compression = "bzip2"; // as Nix: when the line is missing
  std::optional<hash> file_hash;     // of the compressed file
  uint64_t file_size = 0;
  hash nar_hash;
  uint64_t nar_size = 0;
  store_path_set references;
  std::optional<store_path> deriver;
  std::string system;
  std::set<std::string> sigs;
  std::optional<std::string> ca;

  explicit narinfo(store_path p) : path(std::move(p)) {}
  // The narinfo of a store's record (its NAR's file still to be named:
  // url, compression, file hash and size are left for the caller).
  static narinfo of(const path_info& info);
  // What the store would record for the path (the signatures included).
  path_info info() const;
};

// `where` names the source in errors (a URL or a file). Unknown keys are
// ignored, as Nix ignores them; a known key given twice, a line that is not
// "Key: value", a path outside `store_dir`, a reference that is not a store
// path's name, a URL that climbs out of the cache (..), a malformed hash or
// size, and a missing StorePath, URL, NarHash or NarSize are errors.
narinfo parse_narinfo(std::string_view text, std::string_view where,
                      std::string_view store_dir = default_store_dir);
std::string print_narinfo(const narinfo& n);

struct cache_info {
  std::string store_dir = std::string(default_store_dir);
  bool want_mass_query = false;
  int priority = 50; // Nix's default for a cache that says nothing
};
cache_info parse_cache_info(std::string_view text, std::string_view where);

} // namespace kiln
