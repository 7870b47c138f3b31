// The executor for one builder: starts it in its own process group and a
// private mount namespace in which the store appears at /nix/store, and
// watches it until it exits. The sandbox issue adds the full isolation;
// this is the part every build needs.
//
// The child reports any failure before exec over a close-on-exec pipe, so
// "while setting up the build environment: ..." reaches the user instead
// of a bare exit code.
#pragma once

#include "store/error.hpp"
#include "store/fd.hpp"

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace kiln::sandbox {

struct builder_spec {
  std::string program;            // the derivation's builder
  std::vector<std::string> args;  // its arguments (argv[1..])
  std::map<std::string, std::string> env;
  std::string build_dir;          // the working directory (exists, private)
  std::string store_dir = "/nix/store"; // where the builder sees the store
  std::string store_real_dir;     // where the store really is
  // Non-empty: the store is mounted as an overlay whose writes land here
  // (check and repair builds, whose outputs already exist). `overlay_work`
  // is overlayfs's work directory on the same file system.
  std::string overlay_upper, overlay_work;
  // Names in the store the overlay hides, so the builder can create them.
  std::vector<std::string> overlay_hide;
};

// A failure between fork and exec, already worded for the user.
class setup_error : public error {
public:
  using error::error;
};

class builder_process {
public:
  // Forks and execs the builder; throws setup_error if the child could not
  // get as far as running it.
  static builder_process start(const builder_spec& spec);

  builder_process(builder_process&&) = default;
  ~builder_process();

  pid_t pid() const { return pid_; }
  // SIGKILL to the builder's whole process group (timeouts, limits, and
  // whatever the builder left behind when it exits).
  void kill_group() const;

  // Blocks until the builder exits, passing its output (stdout and stderr)
  // to `on_output` as it arrives; then kills what is left of its process
  // group and returns the wait status.
  int watch(const std::function<void(std::string_view)>& on_output);

private:
  builder_process() = default;
  pid_t pid_ = -1;
  bool reaped_ = false;
  unique_fd output_; // read end of the builder's stdout/stderr
  unique_fd exited_; // pidfd: readable once the builder has exited
};

// "exited with code 3", "killed by signal 9", as the reference words it
// after "builder for '...' failed with".
std::string describe_wait_status(int status);

} // namespace kiln::sandbox
