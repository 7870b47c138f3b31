// kilnd's record of its kiln-worker processes: one file per worker in a
// directory (nix/var/kiln/workers), named by the worker's pid, holding its
// start time and its kilnd's pid and start time. A SIGKILLed kilnd's
// workers end when their links do, except one stopped (SIGSTOP) or wedged
// at that moment, which would stay for good and keep its temp roots: the
// next kilnd on the store kills those, with their builds, at its start.
// Start times tell a process from a later one that was given the same pid.
// No CAF here.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kiln {

class worker_registry {
public:
  // "" = no record kept: every call does nothing.
  explicit worker_registry(std::string dir) : dir_(std::move(dir)) {}
  // Best effort: a record that cannot be written or removed is said on
  // stderr (a later sweep misses that worker, or drops the record itself).
  void add(pid_t worker) const;
  void remove(pid_t worker) const;
  // Kills each recorded worker whose kilnd is gone (and its builds' control
  // groups), waits until it has ended (up to 2 s each), and drops every
  // record but those of a live kilnd's workers. Returns the pids killed.
  std::vector<pid_t> kill_orphans() const;

private:
  std::string dir_;
};

// When process `pid` started (clock ticks after boot, /proc/PID/stat), or
// 0 if there is no such process or it has ended (a zombie).
uint64_t process_start_time(pid_t pid);

} // namespace kiln
