// The executor for one builder: applies a sandbox_spec in the child, in
// the fixed order written out in run_child, and watches the builder until
// it exits. Every build runs in a control group of its own (when the host
// has one), so limits apply and nothing it started survives it.
//
// The child reports any failure before exec over a close-on-exec pipe, so
// "while setting up the build environment: ..." reaches the user instead
// of a bare exit code.
#pragma once

#include "sandbox/cgroup.hpp"
#include "sandbox/sandbox_spec.hpp"
#include "store/io/error.hpp"
#include "store/io/fd.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace kiln::sandbox {


// A failure between fork and exec, already worded for the user.
class setup_error : public error {
public:
  using error::error;
};

class builder_process {
public:
  // Forks and execs the builder; throws setup_error if the child could not
  // get as far as running it.
  static builder_process start(const sandbox_spec& spec);

  builder_process(builder_process&&) = default;
  ~builder_process();

  pid_t pid() const { return pid_; }
  // SIGKILL to everything the builder started: its control group, its
  // process group, and (sandboxed) its PID namespace, whose init it is.
  void kill_all() const;

  // Blocks until the builder exits, passing its output (stdout and stderr)
  // to `on_output` as it arrives; then kills whatever is left of the build
  // and returns the wait status.
  int watch(const std::function<void(std::string_view)>& on_output);
  // CPU time and peak memory of the whole build (after watch).
  const cgroup_usage& usage() const { return usage_; }

private:
  builder_process() = default;
  pid_t pid_ = -1;
  bool reaped_ = false;
  // The builder was the first process of its own PID namespace: once it
  // is reaped, the kernel has killed and reaped everything else in it.
  bool pid_namespace_ = false;
  unique_fd output_; // read end of the builder's stdout/stderr
  unique_fd exited_; // pidfd: readable once the builder has exited
  // The sandbox's mount and IPC namespaces, kept past the builder's exit:
  // tearing them down waits for an RCU grace period or two, which is then
  // paid when this object goes, after the build's result has been sent,
  // not between the builder's exit and its parent learning of it.
  unique_fd namespaces_[2];
  std::optional<build_cgroup> cgroup_;
  cgroup_usage usage_;
};

// Whether this host lets Kiln create the sandbox's namespaces (tried once).
// "" if so, else why not.
const std::string& sandbox_unavailable_reason();

// "exited with code 3", "killed by signal 9", as the reference words it
// after "builder for '...' failed with".
std::string describe_wait_status(int status);

} // namespace kiln::sandbox
