// Unix-domain stream sockets by path. A sockaddr_un holds at most 107
// bytes of path, which a store under a deep directory exceeds; longer
// paths are reached through /proc/self/fd/N of their directory instead.
#pragma once

#include "store/io/fd.hpp"

#include <string>

namespace kiln {

// Connects; throws sys_error (code() ENOENT, ECONNREFUSED, ...) on failure.
unique_fd connect_unix(const std::string& path);
// Replaces whatever is at `path` with a socket listening there, mode 0666.
// The socket appears at `path` only once it listens.
unique_fd listen_unix(const std::string& path);

} // namespace kiln
