#include "sandbox/network_namespaces.hpp"

#include "sandbox/made_ahead.hpp"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace kiln::sandbox {

namespace {

// Enough for a chain and the first builds of a wide graph; more builds at
// once than this make their own namespaces as before.
constexpr std::size_t ready_target = 4;

} // namespace

bool loopback_up() {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0)
    return false;
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  std::memcpy(ifr.ifr_name, "lo", 3);
  ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
  bool ok = ::ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
  ::close(s);
  return ok;
}

namespace {

// The filler thread moves itself into a new namespace (unshare affects
// only this thread), readies it, keeps a descriptor and returns to the
// namespace it came from, so it never holds one it handed out.
std::optional<unique_fd> make_network_namespace() {
  static unique_fd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)); // the filler's own
  if (!home || ::unshare(CLONE_NEWNET) != 0)
    return std::nullopt;
  unique_fd fresh(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  bool ok = fresh && loopback_up();
  if (::setns(home.get(), CLONE_NEWNET) != 0 || !ok)
    return std::nullopt;
  return fresh;
}

} // namespace

unique_fd take_network_namespace() {
  if (::geteuid() != 0)
    return unique_fd();
  static auto* pool = new made_ahead<unique_fd>(ready_target, make_network_namespace); // lives as long as its thread
  auto fd = pool->take();
  return fd ? std::move(*fd) : unique_fd();
}

} // namespace kiln::sandbox
