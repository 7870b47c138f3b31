#include "store/io/unix_socket.hpp"

#include "store/io/error.hpp"
#include "store/io/file_ops.hpp"

#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace kiln {
namespace {

// Calls `op` with an address for `path`; `dir_fd` keeps the directory open
// while a /proc/self/fd address is in use.
template <typename Op>
int with_address(const std::string& path, Op op) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string target = path;
  unique_fd dir_fd;
  if (path.size() >= sizeof addr.sun_path) {
    auto [dir, name] = split_path(path);
    dir_fd.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir_fd)
      throw_errno("opening the directory of the socket '" + path + "'");
    target = "/proc/self/fd/" + std::to_string(dir_fd.get()) + "/" + name;
    if (target.size() >= sizeof addr.sun_path)
      throw error("the socket name in '" + path + "' is too long");
  }
  std::memcpy(addr.sun_path, target.c_str(), target.size() + 1);
  return op(reinterpret_cast<sockaddr*>(&addr), static_cast<socklen_t>(sizeof addr));
}

unique_fd new_socket() {
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd)
    throw_errno("creating a unix socket");
  return fd;
}

} // namespace

unique_fd connect_unix(const std::string& path) {
  unique_fd fd = new_socket();
  int rc = with_address(path, [&](sockaddr* a, socklen_t n) {
    int r;
    while ((r = ::connect(fd.get(), a, n)) != 0 && errno == EINTR) {
    }
    return r;
  });
  if (rc != 0)
    throw_errno("connecting to '" + path + "'");
  return fd;
}

unique_fd listen_unix(const std::string& path) {
  unique_fd fd = new_socket();
  // Made under a name of its own and renamed into place once it listens:
  // a client that finds the socket can connect to it (bound but not yet
  // listening, it would be refused).
  std::string made = path + ".new";
  if (::unlink(made.c_str()) != 0 && errno != ENOENT)
    throw_errno("removing the old socket '" + made + "'");
  if (with_address(made, [&](sockaddr* a, socklen_t n) { return ::bind(fd.get(), a, n); }) != 0)
    throw_errno("binding the socket '" + made + "'");
  if (::chmod(made.c_str(), 0666) != 0)
    throw_errno("setting the mode of '" + made + "'");
  if (::listen(fd.get(), 128) != 0)
    throw_errno("listening on '" + made + "'");
  if (::rename(made.c_str(), path.c_str()) != 0)
    throw_errno("moving the socket to '" + path + "'");
  return fd;
}

} // namespace kiln
