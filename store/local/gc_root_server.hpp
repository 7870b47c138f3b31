// The collector's end of gc-socket/socket (Nix 2.8's protocol, see
// temp_roots.hpp): while a collection runs, processes that could not take
// gc.lock shared send their new temp roots here, one "PATH\n" per root,
// and wait for "1". A root that arrives while its path is being deleted is
// answered only once the deletion is over, so the sender never sees a path
// half gone.
#pragma once

#include "store/io/fd.hpp"
#include "store/format/store_path.hpp"

#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <thread>

namespace kiln {

class gc_root_server {
public:
  // Listens at `socket_path` (replacing a stale socket) on its own thread.
  // `roots` are the hash parts already known to be roots.
  gc_root_server(std::string socket_path, std::string store_dir, std::set<std::string> roots);
  ~gc_root_server(); // stops the thread, removes the socket
  gc_root_server(const gc_root_server&) = delete;
  gc_root_server& operator=(const gc_root_server&) = delete;

  // Before deleting `p`: false if it is a root; otherwise `p` is marked as
  // being deleted until finish_deletion(), and roots for it wait.
  bool claim_for_deletion(const store_path& p);
  void finish_deletion();
  bool is_root(const store_path& p);

  // Roots received over the socket, and lines that were not store paths.
  std::size_t received() const;
  std::size_t rejected() const;

private:
  void serve();
  void answer_lines(int client, std::string& buffer);

  std::string socket_path_, store_dir_;
  unique_fd listen_fd_, wake_read_, wake_write_;
  mutable std::mutex mutex_;
  std::condition_variable deletion_done_;
  std::set<std::string> roots_;
  std::string pending_;
  std::size_t received_ = 0, rejected_ = 0;
  std::thread thread_;
};

} // namespace kiln
