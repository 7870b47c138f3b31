// One control group per build: membership from before exec, so every
// process the builder starts (double-forked daemons included) is counted,
// limited and killed with it; CPU time and peak memory read at the end.
//
// Hosts differ: pure cgroup v2 (/sys/fs/cgroup), or hybrid (v2 at
// /sys/fs/cgroup/unified without controllers, v1 memory/pids/cpu beside
// it). The layout is detected once from /proc/self/mountinfo and
// /proc/self/cgroup; the build's groups go below this process's own group
// in each hierarchy, so a daemon confined by its supervisor stays confined.
#pragma once

#include "sandbox/sandbox_spec.hpp"
#include "store/io/fd.hpp"

#include <cstdint>
#include <optional>
#include <sys/types.h>
#include <string>
#include <vector>

namespace kiln::sandbox {

// Where this process's groups are: "" for a hierarchy that is not there.
struct cgroup_layout {
  std::string unified;           // v2 directory of this process's group
  std::vector<std::string> unified_controllers; // usable below it
  std::string memory_v1, pids_v1, cpu_v1; // v1 directories of this process's groups
};

// Pure: the layout from the texts of /proc/self/mountinfo and
// /proc/self/cgroup (tested with both kinds of host).
cgroup_layout parse_cgroup_layout(const std::string& mountinfo, const std::string& self_cgroup);
// The running host's, read once.
const cgroup_layout& host_cgroup_layout();

struct cgroup_usage {
  uint64_t cpu_user_us = 0, cpu_system_us = 0;
  uint64_t peak_memory = 0; // bytes; 0 if no hierarchy measures it
};

class build_cgroup {
public:
  // The build's groups (made ahead, or now) with `limits`. Returns nothing
  // if the host has no writable cgroup hierarchy; throws kiln::error if a
  // limit was asked that the host cannot enforce.
  static std::optional<build_cgroup> create(const cgroup_limits& limits);

  build_cgroup(build_cgroup&&) = default;
  build_cgroup& operator=(build_cgroup&&) = default;
  ~build_cgroup(); // kills what is left and removes the groups

  // cgroup.procs of each group, open for writing: the child writes "0" to
  // each before exec to join.
  const std::vector<unique_fd>& join_fds() const { return procs_; }
  // SIGKILL to every process in the group (cgroup.kill, else one by one
  // until none is left).
  void kill_all() const;
  // Waits (up to a few seconds) until the group is empty.
  void wait_empty() const;
  cgroup_usage usage() const;

private:
  build_cgroup() = default;
  // The groups every build has: v2's, and v1's memory group where v2 has
  // no memory controller.
  static build_cgroup make_base(const cgroup_layout& l);
  // Makes this build's group below `parent` (one of the layout's); returns its directory.
  std::string make(const cgroup_layout& l, const std::string& parent);
  // Sets `limits`, making the v1 groups they need.
  void limit(const cgroup_layout& l, const cgroup_limits& limits);
  std::string name_;
  std::vector<std::string> dirs_; // created, removed in reverse order
  std::vector<unique_fd> procs_;
  std::string unified_, memory_v1_, cpu_v1_;
};

// SIGKILL to every process in the build groups process `owner` made (they
// are named after it): what is left of the builds of a kiln-worker that
// died, which shares the caller's group. The groups themselves go with the
// next sweep of stale ones.
void kill_build_groups_of(pid_t owner);

} // namespace kiln::sandbox
