// Decompression as a source: what Nix's binary caches and build logs use
// (none, xz, bzip2, zstd), streamed, so memory stays bounded whatever the
// size of what is read.
#pragma once

#include "store/io/stream.hpp"

#include <memory>
#include <string>
#include <string_view>

namespace kiln {

// Reads `in` decompressed by `method`, named as Nix names it: "none" (or
// ""), "xz", "bzip2" or "zstd". Data that is not of that kind, or that
// ends before its stream does, is a format_error naming `what` and the
// method; so is an unknown method.
std::unique_ptr<source> decompressing_source(source& in, std::string_view method, std::string what);

} // namespace kiln
