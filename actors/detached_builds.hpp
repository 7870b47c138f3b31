// kilnd's detached builds (`kiln build --detach`): requests kept in the
// durable queue (store/local/build_queue.hpp), each run on the engine apart
// from any connection, their results kept there until fetched (`--attach`,
// `kiln status`). Requests not done when kilnd stopped or was killed run
// again when it starts. No CAF in this header.
#pragma once

#include "actors/engine.hpp"
#include "store/format/settings.hpp"
#include "store/local/build_queue.hpp"

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kiln {

class detached_builds {
public:
  // `config`: kilnd's own settings, under a request's client's settings.
  detached_builds(const store_layout& layout, engine_host& engine, std::function<settings()> config);
  // Cancels what runs (it stays queued, to run again at the next start).
  ~detached_builds();
  detached_builds(const detached_builds&) = delete;
  detached_builds& operator=(const detached_builds&) = delete;

  // Queues DRV!outputs paths and starts them, with the client's settings
  // that differ from kilnd's (name -> value); the request's id. Throws
  // format_error for a path that is not one.
  uint64_t submit(const std::vector<std::string>& paths, const std::map<std::string, std::string>& client_settings);
  // The request as JSON (queued_build's fields, results parsed), once done
  // if `wait` (or once `give_up` says so, or kilnd stops: then not done);
  // nullopt if there is no such request.
  std::optional<std::string> status(uint64_t id, bool wait, const std::function<bool()>& give_up = {});

private:
  void start(queued_build q);
  void run(queued_build q);

  store_layout layout_;
  engine_host& engine_;
  std::function<settings()> config_;
  build_queue queue_;
  std::mutex mutex_;
  std::condition_variable finished_;
  bool stopping_ = false;
  std::map<uint64_t, std::shared_ptr<engine_job>> running_;
  std::set<uint64_t> ended_; // runs of this kilnd that have recorded their results
  std::size_t active_ = 0;   // runs whose threads (detached) have not ended
};

} // namespace kiln
