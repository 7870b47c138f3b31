#include "sandbox/network_namespaces.hpp"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

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

class namespace_pool {
public:
  unique_fd take() {
    std::unique_lock<std::mutex> hold(m_);
    if (!started_) {
      started_ = true;
      std::thread([this] { fill(); }).detach();
    }
    if (ready_.empty())
      return unique_fd();
    unique_fd fd = std::move(ready_.front());
    ready_.pop_front();
    wanted_.notify_one();
    return fd;
  }

private:
  // The filler thread: moves itself into a new namespace (unshare affects
  // only this thread), readies it, keeps a descriptor and returns to the
  // namespace it came from, so it never holds one it handed out. It stops
  // for good at the first failure: builders then make their own.
  void fill() {
    unique_fd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!home)
      return;
    for (;;) {
      {
        std::unique_lock<std::mutex> hold(m_);
        wanted_.wait(hold, [this] { return ready_.size() < ready_target; });
      }
      if (::unshare(CLONE_NEWNET) != 0)
        return;
      unique_fd fresh(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
      bool ok = fresh && loopback_up();
      if (::setns(home.get(), CLONE_NEWNET) != 0 || !ok)
        return;
      std::lock_guard<std::mutex> hold(m_);
      ready_.push_back(std::move(fresh));
    }
  }

  std::mutex m_;
  std::condition_variable wanted_;
  std::deque<unique_fd> ready_;
  bool started_ = false;
};

} // namespace

unique_fd take_network_namespace() {
  if (::geteuid() != 0)
    return unique_fd();
  static namespace_pool* pool = new namespace_pool; // lives as long as its thread
  return pool->take();
}

} // namespace kiln::sandbox
