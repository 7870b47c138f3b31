#include "sandbox/worker_privileges.hpp"

#include "store/io/error.hpp"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>

namespace kiln::sandbox {

const std::vector<int>& worker_capabilities() {
  static const std::vector<int> keep{
      CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID, // the store, build directories
      CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP,                            // build users, dropping for builders
      CAP_SYS_ADMIN, CAP_SYS_CHROOT, CAP_MKNOD, CAP_NET_ADMIN,                  // namespaces, mounts, loopback
      CAP_SYS_RESOURCE, CAP_SYS_NICE, CAP_IPC_LOCK,                             // limits builds may set
      CAP_NET_BIND_SERVICE, CAP_NET_RAW, // what an unsandboxed build as root may use
      // Opening a starting builder's namespaces (/proc/PID/ns/*): between
      // taking its build user and exec it is not dumpable, and then only
      // this lets its parent in (without it, builds failed now and then).
      CAP_SYS_PTRACE,
  };
  return keep;
}

namespace {

bool kept(int cap) {
  auto& keep = worker_capabilities();
  return std::find(keep.begin(), keep.end(), cap) != keep.end();
}

} // namespace

void keep_only_worker_capabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &header, data) != 0)
    throw_errno("reading this process's capabilities");
  if (!(data[0].effective & (1u << CAP_SETPCAP)))
    return; // not root: nothing to drop
  for (int cap = 0; cap <= 63; ++cap) {
    if (kept(cap))
      continue;
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      if (errno == EINVAL)
        break; // past the kernel's last capability
      throw_errno("dropping capability " + std::to_string(cap) + " from the bounding set");
    }
  }
  uint64_t mask = 0;
  for (int cap : worker_capabilities())
    mask |= uint64_t(1) << cap;
  for (int i = 0; i < 2; ++i) {
    auto part = static_cast<uint32_t>(mask >> (32 * i));
    data[i].effective &= part;
    data[i].permitted &= part;
    data[i].inheritable &= part;
  }
  if (::syscall(SYS_capset, &header, data) != 0)
    throw_errno("dropping this process's capabilities");
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); // EINVAL on old kernels: nothing to clear
}

} // namespace kiln::sandbox
