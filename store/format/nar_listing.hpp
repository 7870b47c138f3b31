// What a NAR contains, without unpacking it: `kiln nar ls`, and later the
// `.ls` files of binary caches. Both listings are written as the NAR is
// parsed (no tree in memory), so a tree of any depth the parser accepts
// costs no recursion.
#pragma once

#include "store/format/nar.hpp"

#include <string>

namespace kiln {

// The JSON of `nix nar ls --json --recursive` ({"type": ..., "entries": ...},
// with size/executable/narOffset for files and target for symlinks).
std::string nar_listing_json(source& nar, const nar_limits& limits = {});
// One line per object as `ls -l` would show the restored tree:
// `-r-xr-xr-x      12 ./bin/hello`, `lrwxrwxrwx 0 ./lib -> ../x`.
std::string nar_listing_text(source& nar, const nar_limits& limits = {});

} // namespace kiln
