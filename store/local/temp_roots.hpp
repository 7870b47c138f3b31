// Temporary GC roots, kept as Nix 2.8 keeps them so Kiln and Nix processes
// can share one store:
//   - each process appends NUL-terminated store paths to temproots/<pid>,
//     which it holds exclusively locked for as long as it lives;
//   - after appending it tries gc.lock shared; if that fails, a collector
//     is running, so it tells the collector over gc-socket/socket (a line
//     "PATH\n", answered "1") and waits for the answer.
// A collector takes gc.lock exclusively before reading the files, so a root
// is always either in a file it reads or sent to its socket. (Nix 2.8
// appends after the answer instead, which leaves a window: a collector
// starting right after the previous one answered can miss the root.)
#pragma once

#include "store/io/fd.hpp"
#include "store/format/store_path.hpp"

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <sys/types.h>
#include <vector>

namespace kiln {

class temp_roots {
public:
  // This process's temp roots for the store with state directory
  // `state_dir`: one per process and store, as the file is named by pid.
  static temp_roots& for_store(const std::string& state_dir, const std::string& store_dir);

  // `owner` names the file beside the pid ("<pid>-<owner>"): one file per
  // daemon session, so a session's roots go when it ends, as a Nix daemon
  // worker's go with its process. Nix's collector reads the pid before the
  // dash and, like Kiln's, trusts only the file's lock.
  temp_roots(std::string state_dir, std::string store_dir, const std::string& owner = "");
  ~temp_roots(); // removes the file
  temp_roots(const temp_roots&) = delete;
  temp_roots& operator=(const temp_roots&) = delete;

  // Keeps `p` (valid or not yet) from the collector until this process exits.
  void add(const store_path& p);
  // The same for many paths at once: one write and one look for a collector.
  void add(const std::vector<store_path>& paths);

private:
  void open_file();
  // Sends a root to a running collector; false if none answers (yet).
  bool tell_collector(const std::string& line);

  std::mutex mutex_;
  pid_t pid_;
  std::string state_dir_, store_dir_, file_;
  unique_fd file_fd_, gc_lock_fd_, socket_fd_;
};

// gc.lock in the state directory.
std::string gc_lock_path(const std::string& state_dir);
std::string gc_socket_path(const std::string& state_dir);

// The collector's side: every live process's temp roots, by path. Files of
// processes that are gone are deleted and marked (as Nix does), so a process
// that reuses the pid starts afresh. Lines that are not store paths are skipped.
std::map<store_path, std::set<long>> read_temp_roots(const std::string& temproots_dir,
                                                    const std::string& store_dir);

// Deletes the temp-roots files of processes that are gone (their lock is
// free), of process `pid` only ("<pid>", "<pid>-...") unless it is -1:
// kilnd does so at its start (a killed kilnd's and its workers') and for
// each worker it reaped, instead of leaving them to the next collector.
void remove_stale_temp_roots(const std::string& temproots_dir, long pid = -1);

} // namespace kiln
