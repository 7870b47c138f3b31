// The builder's side of the clone: applies a sandbox_spec between clone and
// exec, in the order written out above run_child, using only system calls
// (it shares the daemon's memory until exec). builder_process prepares the
// child_plan and reads a `failure` back if a step fails.
#pragma once

#include "sandbox/sandbox_spec.hpp"
#include "sandbox/seccomp_filter.hpp"

#include <sys/types.h>

#include <cstddef>
#include <string>

namespace kiln::sandbox {

// What the child sends back when a step fails: which step, errno, and the
// mount step's index. The parent words it (setup_failure_text).
struct failure {
  int at;
  int err;
  int index;
};

// A mount step with every string ready and every target relative to the
// new root ("./nix/store"): the child works inside the root it builds, so
// no lookup walks the host's path to it and make_parents starts there.
struct child_mount {
  uint8_t kind;
  bool optional, source_is_dir;
  bool parents_exist; // see parents_made_earlier
  mode_t mode;
  const char* source;
  std::size_t source_size;
  char* target; // writable: the child cuts it at each '/' to make parents
};

// What the child needs, prepared before the clone: in the child only
// system calls run, since it shares the parent's memory and must not touch
// the allocator or any lock another thread may hold.
struct child_plan {
  const sandbox_spec* spec;
  char** argv;
  char** envp;
  bool remount, overlay, as_root, isolated;
  const char* uid_map;
  const char* gid_map;
  const char* overlay_options;
  const char* root_dir;
  const char* cwd;
  const child_mount* mounts;
  std::size_t mount_count;
  int userns_fd; // root: the build user's namespace, joined after the mounts
  int netns_fd;  // a fresh network namespace made ahead, or -1 (clone makes one)
  const int* cgroup_fds;
  std::size_t cgroup_count;
  const sock_fprog* filter; // or null: no seccomp
  int report_fd, null_fd, out_fd;
  // The report pipe's read end, the parent's: the child closes its copy
  // first, so the write end polls as an error once the parent is gone.
  int report_read_fd;
};

// The clone's entry point; never returns (execs or _exits).
int run_child(void* plan);

// "while setting up the build environment: <step>: <errno text>".
std::string setup_failure_text(const sandbox_spec& spec, failure f);

} // namespace kiln::sandbox
