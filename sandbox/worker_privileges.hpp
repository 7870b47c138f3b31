// What a kiln-worker keeps of root's privileges (issue 16: workers run
// with only the privileges their builds need). The capability bounding
// set is cut to what preparing builds and sandboxes and writing the store
// take, so neither the worker nor anything it starts (an unsandboxed
// build running a setuid-root program included) can ever hold the rest:
// loading modules, raw I/O, the clock, rebooting, audit and MAC
// administration, BPF, and whatever capability a later kernel adds.
#pragma once

#include <vector>

namespace kiln::sandbox {

// The capabilities a worker keeps (CAP_* numbers).
const std::vector<int>& worker_capabilities();

// Drops every other capability from this process's bounding, permitted,
// effective and inheritable sets (and the ambient set). Does nothing for a
// process without CAP_SETPCAP (an ordinary user's has nothing to drop);
// throws if dropping fails otherwise.
void keep_only_worker_capabilities();

} // namespace kiln::sandbox
