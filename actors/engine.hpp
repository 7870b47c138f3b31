// The build engine as one call, for the CLI and tests: runs the scheduler,
// goals, builders, logger and store actor in this process (the embedded
// default) until every requested goal has its result. No CAF in this
// header, so its users compile quickly.
#pragma once

#include "messages/build_types.hpp"
#include "store/local/local_store.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace caf {
class actor_system;
}

namespace kiln {

// What the engine tells whoever runs it (the CLI prints these).
struct engine_event {
  // notice: a line for the user as it is (the post-build hook's output).
  // log_line: a line of a build's log (only with print_build_logs), in text.
  // copied: drv_path was copied from the substituter `text` names.
  // hook_started (text: the program), hook_output (text: a line it
  // printed), hook_ended: the post-build hook of drv_path's build.
  enum kind_t { building, status, finished, notice, log_line, copied, hook_started, hook_output, hook_ended } kind =
      status;
  std::string drv_path;
  std::string text; // "building '...'", a result's error, ...
  std::size_t built = 0, running = 0, queued = 0, failed = 0;
  build_status result = build_status::misc_failure; // finished: how the goal ended
};
using event_sink = std::function<void(const engine_event&)>;
// A line of `drv`'s build log as an event.
engine_event log_line_event(const std::string& drv, const std::string& line);

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

// One run of the engine in an engine_host, going on while its caller waits.
class engine_job {
public:
  virtual ~engine_job() = default;
  // True once the run has ended (then result() does not wait).
  virtual bool wait_for(std::chrono::milliseconds how_long) = 0;
  // Cancels every goal of this run: builders killed, directories removed.
  // Safe from any thread, any number of times.
  virtual void cancel() = 0;
  // Waits for the end; throws if the engine itself failed.
  virtual engine_run result() = 0;
};

// kilnd's worker processes (actors/worker_pool.cpp): `count` kiln-worker
// processes run the builds; 0 = builds in this process.
struct worker_options {
  uint32_t count = 0;
  std::string program;          // the kiln-worker executable
  std::string build_dir_parent; // build-dir ("" = $TMPDIR or /tmp)
  std::string temproots_dir;    // the store's: a reaped worker's temp roots are removed
  std::string registry_dir;     // where workers are recorded (worker_registry.hpp); "" = nowhere
};

// An actor system that outlives runs (kilnd): each run gets its own store
// actor, logger and scheduler in it, with the run's options. A run wanting
// a derivation another run has a goal for, with the same build options,
// joins that goal; with other options they meet at the store's locks, as
// two processes would. A run that is cancelled leaves running what another
// run wants (shared_goals.hpp). Events are called from the engine's threads.
class engine_host {
public:
  // With `shared_slots`, the runs share that many build slots in all, taken
  // in turn (kilnd's max-jobs); each run's own max-jobs still caps it. 0:
  // each run has its own.
  // With `workers.count`, builds run in that many kiln-worker processes.
  explicit engine_host(uint32_t shared_slots = 0, worker_options workers = {});
  ~engine_host();
  engine_host(const engine_host&) = delete;
  engine_host& operator=(const engine_host&) = delete;
  std::unique_ptr<engine_job> start(std::shared_ptr<local_store> store, const build_options& options,
                                    const std::vector<goal_request>& requests, event_sink events);
  // Ends the worker processes, if any (each kills its builds and exits;
  // kilnd kills one that has not within worker_stop_deadline); returns how
  // many had to be killed. Runs must be over.
  uint32_t stop_workers();
  // The actor system the runs live in (kilnd's supervisor and sessions too).
  caf::actor_system& system();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace kiln
