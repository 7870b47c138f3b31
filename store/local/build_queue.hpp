// kilnd's durable queue of detached build requests: what clients asked for
// (`kiln build --detach`) and have not received yet, in a SQLite file of
// Kiln's own under nix/var/kiln (not Nix's database), so a request survives
// a kilnd restart and its result can be fetched later (`--attach ID`).
#pragma once

#include "store/local/sqlite.hpp"
#include "store/local/store_layout.hpp"

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace kiln {

struct queued_build {
  uint64_t id = 0;
  std::vector<std::string> paths; // DRV!outputs, as asked
  // The client's settings where they differ from kilnd's (name -> value):
  // the request runs with them, also after a restart.
  std::map<std::string, std::string> settings;
  bool done = false;
  std::string results; // once done: the results as JSON (an array, messages/build_json.hpp)
  int64_t submitted = 0, finished = 0; // unix seconds
};

class build_queue {
public:
  // Opens (making it if missing) nix/var/kiln/queue.sqlite of `layout`.
  explicit build_queue(const store_layout& layout);
  // Records a request; its id, durable once this returns.
  uint64_t submit(const std::vector<std::string>& paths, const std::map<std::string, std::string>& settings = {});
  // Records a request's results; it is done from then on.
  void finish(uint64_t id, const std::string& results);
  std::optional<queued_build> get(uint64_t id);
  // Requests not done yet, oldest first (to resume after a restart).
  std::vector<queued_build> unfinished();

private:
  queued_build row(sqlite_stmt& s);
  std::mutex mutex_; // one connection, used from kilnd's session threads
  sqlite_db db_;
};

} // namespace kiln
