// A path's record (ValidPathInfo) as the protocol carries it, to and from
// the store's path_info: in QueryPathInfo's reply (without the path), in
// AddToStore's reply, AddToStoreNar's request and AddMultipleToStore's
// stream (with it). The NAR hash travels as bare base16 SHA-256.
#pragma once

#include "store/daemon/shapes.hpp"
#include "store/format/path_info.hpp"

#include <optional>
#include <vector>

namespace kiln::daemon {

// Reads a record from args[pos...] (advancing pos). `path` is the record's
// path when the message does not carry it. Throws format_error naming what
// is wrong (a store path outside the store, a malformed hash).
path_info path_info_from(const std::vector<argument>& args, std::size_t& pos,
                         const std::optional<store_path>& path = std::nullopt);
// Appends the record's arguments, with its path or without.
void append_path_info(std::vector<argument>& args, const path_info& info, bool with_path);

} // namespace kiln::daemon
