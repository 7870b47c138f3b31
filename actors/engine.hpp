// The build engine as one call, for the CLI and tests: runs the scheduler,
// goals, builders, logger and store actor in this process (the embedded
// default) until every requested goal has its result. No CAF in this
// header, so its users compile quickly.
#pragma once

#include "messages/build_types.hpp"
#include "store/local/local_store.hpp"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kiln {

// What the engine tells whoever runs it (the CLI prints these).
struct engine_event {
  // notice: a line for the user as it is (the post-build hook's output).
  enum kind_t { building, status, finished, notice } kind = status;
  std::string drv_path;
  std::string text; // "building '...'", a result's error, ...
  std::size_t built = 0, running = 0, queued = 0, failed = 0;
};
using event_sink = std::function<void(const engine_event&)>;

struct engine_run {
  std::vector<build_result> top_level; // in the order asked
  std::vector<build_result> all;       // every goal's result, dependencies included
  bool interrupted = false;            // SIGINT or SIGTERM cancelled the run
};

// `store` is the caller's open store; the store actor takes it over.
// SIGINT and SIGTERM cancel the run (builders killed, build directories
// removed) instead of killing the process; a second one ends it at once.
engine_run run_builds(std::shared_ptr<local_store> store, const build_options& options,
                      const std::vector<goal_request>& requests, const event_sink& events);

} // namespace kiln
