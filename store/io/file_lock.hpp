// Advisory locks as Nix takes them: flock(2) on a lock file. Nix 2.8 locks
// store paths, the GC lock and temp-roots files this way; Linux keeps
// flock and fcntl locks apart, so anything else would not exclude Nix.
// flock locks belong to the open file, so two opens in one process exclude
// each other just as two processes do.
#pragma once

#include "store/io/fd.hpp"

#include <string>

namespace kiln {

enum class lock_kind { shared, exclusive, none };

// Opens (creating, mode 0600) a lock file for reading and writing.
unique_fd open_lock_file(const std::string& path);

// Takes, changes (or with `none` drops) the lock on `fd`. Without `wait`,
// returns false at once if another holder is in the way. `what` names the
// file in errors.
bool lock_file(int fd, lock_kind kind, bool wait, const std::string& what);

} // namespace kiln
