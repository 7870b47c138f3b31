// Fresh network namespaces, made ahead of need. Creating one costs about
// half a millisecond here (most of what a sandboxed clone costs), so a root
// daemon keeps a few ready, made on a thread of their own while builds run,
// instead of having every builder's clone make its own. Each is handed out
// once and holds nothing but a loopback interface that is already up, so a
// builder sees exactly what CLONE_NEWNET would have given it.
#pragma once

#include "store/io/fd.hpp"

namespace kiln::sandbox {

// A descriptor of a fresh network namespace (loopback up) for one builder,
// which joins it with setns; empty when none is ready (the builder's clone
// then makes its own) or the process is not root. Starts the filler thread
// on first use.
unique_fd take_network_namespace();

// Brings up "lo" in the caller's network namespace. Only system calls, so
// the builder's clone child may call it too.
bool loopback_up();

} // namespace kiln::sandbox
