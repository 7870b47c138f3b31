// Leftovers of processes that are gone: temporaries named after the pid of
// the process that made them (PREFIX<pid>-...), which a later process may
// remove once that pid is gone (optimise's temporary links, a killed
// engine's build directories, a killed `nar restore`'s staging directory).
#pragma once

#include <sys/types.h>

#include <string_view>

namespace kiln {

// The pid in a name made as PREFIX<pid>..., or 0 if it has none.
pid_t pid_in_name(std::string_view name, std::string_view prefix);

// True if no process has this pid (any more). A pid in another user's
// process is not gone.
bool process_gone(pid_t pid);

} // namespace kiln
