// The derivation goal's state and the steps its two files share:
// derivation_goal.cpp (the states up to a build, and done) and
// goal_rounds.cpp (a build's rounds: described by the store actor, applied
// by a builder in this process or on a worker, judged, released; the
// post-build hook). Only those two files include it.
#pragma once

#include "actors/actors.hpp"
#include "store/local/path_lock.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kiln::goal {


struct drv_goal_state {
  goal_request request;
  build_options options;
  scheduler_actor scheduler;
  store_actor store;
  substituter_actor substituters;
  logger_actor logger;
  std::shared_ptr<build_host> host;
  std::string store_real_dir;
  loaded_derivation loaded;
  std::vector<path_lock> locks;
  bool has_lease = false;
  uint64_t lease = 0;
  uint32_t round = 0, rounds = 1;
  worker_pool_actor workers; // kilnd's worker processes, if any
  builder_actor builder;     // the round's, while it has one
  worker_front_actor front;  // the front of the worker it is on, if any
  uint64_t round_id = 0;     // the round's number for the builder (a worker's: the lease's)
  // The round's log is being closed (after the report): its release waits
  // for that, with this note.
  bool log_closing = false;
  std::optional<std::string> released_note;
  // Which attempt at the round answers count for: one whose worker was
  // lost may still answer, or time out, after the next has begun.
  uint64_t attempt = 0;
  uint32_t retries = 0; // rounds tried again after a lost worker
  bool reported = false; // the round's builder has reported: losing it now costs only its release
  bool leasing = false; // waiting for a builder from a worker
  bool describing = false; // waiting for the store to describe the round
  bool applied = false;    // the builder it holds has been given the round
  bool builder_spoiled = false; // it answered the round with an error: not given another
  std::optional<caf::error> lease_error; // no builder came while the round was being described
  // The round being applied (retried as it is), and a result waiting for
  // its builder's release.
  build_request current;
  std::optional<build_result> releasing;
  bool cancelled = false;
  bool waiting_noted = false;
  std::size_t pending = 0;
  std::size_t failed_inputs = 0;
  bool repair_needed = false; // --repair: an output is missing or damaged
  std::set<std::string> damaged; // --repair: valid outputs whose contents are damaged, by name
  bool substituter_failed = false; // a copy went wrong (not: absent, untrusted)
  bool substituted_invalid = false; // an output that was not valid came from a substituter
  int64_t start_time = 0;
  static inline const char* name = "derivation_goal";
};

using goal_ptr = caf::stateful_actor<drv_goal_state>*;

void get_derivation(goal_ptr self, bool read_ahead);
void have_derivation(goal_ptr self);
void try_substitutes(goal_ptr self);
void find_damage(goal_ptr self);
void outputs_substituted(goal_ptr self);
void inputs_realised(goal_ptr self);
void try_to_build(goal_ptr self);
void start_round(goal_ptr self);
void run_post_build_hook(goal_ptr self, build_result r);
// The builder of the round went down before it reported, or none came.
void worker_lost(goal_ptr self, const std::string& why);
// The builder it holds is of no more use to it: back to the pool (to serve
// another round if `reusable`), or, in this process, let go.
void give_back(goal_ptr self, bool reusable);
// Tells the round's builder to stop it (through its worker's front, if on
// a worker).
void cancel_builder(goal_ptr self);
void done(goal_ptr self, build_result r);

// A goal's end without a build of its own (a failure, or outputs already there).
inline build_result ended(build_status s, std::string text = {}) {
  build_result r;
  r.status = s;
  r.error = std::move(text);
  return r;
}

inline const std::string& drv_path(goal_ptr self) { return self->state.request.drv_path; }

// A line for the user (stderr), not for the build log.
inline void say(goal_ptr self, const std::string& line) {
  self->send(self->state.scheduler, notice_atom::value, drv_path(self), line);
}

inline std::set<std::string> wanted_outputs(goal_ptr self) {
  auto& st = self->state;
  if (!st.request.outputs.empty())
    return st.request.outputs;
  std::set<std::string> all;
  for (auto& [name, out] : st.loaded.drv.outputs)
    all.insert(name);
  return all;
}

inline bool wanted_all_valid(goal_ptr self) {
  for (auto& name : wanted_outputs(self)) {
    auto it = self->state.loaded.output_valid.find(name);
    if (it == self->state.loaded.output_valid.end() || !it->second)
      return false;
  }
  return true;
}


} // namespace kiln::goal
