// What a NAR contains, without unpacking it: `kiln nar ls`, and later the
// `.ls` files of binary caches.
#pragma once

#include "store/nar.hpp"

#include <map>
#include <memory>
#include <string>

namespace kiln {

struct nar_node {
  enum class kind { regular, symlink, directory };
  kind type = kind::regular;
  bool executable = false;
  uint64_t size = 0;       // regular files
  uint64_t nar_offset = 0; // where a regular file's contents start
  std::string target;      // symlinks
  std::map<std::string, nar_node> entries; // directories
};

nar_node list_nar(source& in, const nar_limits& limits = {});

// The JSON of `nix nar ls --json --recursive` ({"type": ..., "entries": ...},
// with size/executable/narOffset for files and target for symlinks).
std::string nar_listing_json(const nar_node& root);
// One line per object as `ls -l` would show the restored tree:
// `-r-xr-xr-x      12 ./bin/hello`, `lrwxrwxrwx 0 ./lib -> ../x`.
std::string nar_listing_text(const nar_node& root);

} // namespace kiln
