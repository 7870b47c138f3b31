// The scheduler's state and the steps its two files share: scheduler.cpp
// (the goal table, the build slots, the behaviour) and scheduler_runs.cpp
// (what a run shares with the other runs of its engine_host: goals joined
// across runs, interest, and a cancel that stops only what nobody else
// wants). Only those two files include it.
#pragma once

#include "actors/actors.hpp"
#include "actors/shared_goals.hpp"

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>

namespace kiln::scheduling {

using result_callback = std::function<void(const build_result&)>;
using goal_key = std::pair<std::string, bool>; // a derivation or a path (true)

struct goal_entry {
  caf::actor goal; // null once finished, and while joined elsewhere
  std::set<std::string> outputs; // wanted; empty = all
  std::vector<result_callback> waiters;
  std::optional<build_result> result;
  bool top_level = false;
  bool is_path = false;
  bool cancel_sent = false;
  std::string profile;     // offered to other runs under these options ("" = not)
  scheduler_actor owner;   // joined: the run whose goal it is
  unsigned joins = 0;      // joined: answers still to come from there
  uint64_t watch = 0;      // joined: the watcher that shows its build's log here
};

struct queued_slot {
  caf::typed_response_promise<uint64_t> promise;
  caf::actor_addr holder;
};

struct scheduler_state {
  scheduler_actor me;
  store_actor store;
  substituter_actor substituters;
  logger_actor logger;
  std::shared_ptr<build_host> host; // where this run's builders build (no workers)
  worker_pool_actor workers;        // kilnd's worker processes, if any
  build_options options;
  event_sink events;
  std::string store_real_dir;
  std::map<std::string, goal_entry> drv_goals, path_goals;
  // Derivations read ahead by goals, for the goals of their inputs.
  std::map<std::string, loaded_derivation> preloaded;
  // A running goal's key.
  std::map<caf::actor_addr, goal_key> by_actor;
  // What each goal asked for: a goal kept for another run keeps these.
  std::map<goal_key, std::set<goal_key>> children;
  uint64_t next_lease = 1;
  std::map<uint64_t, caf::actor_addr> leases;
  // kilnd: every lease is also one of the daemon's slots (its pool lease).
  slot_pool_actor pool;
  std::map<uint64_t, uint64_t> pool_leases;
  std::size_t asking_pool = 0; // granted here, waiting for the pool
  std::deque<queued_slot> slot_queue;
  std::vector<build_result> results;
  std::size_t built = 0, failed = 0;
  bool cancelling = false;
  bool ticking = false;       // a cancelling run looks again in a moment
  std::set<goal_key> kept;    // cancelling: the goals another run still wants
  bool answered = false;      // the run has its results; ends when no goal is left
  // kilnd: what the runs share, and the derivations this run counts as
  // wanted there (given back as their goals end, or all at once when the
  // run is cancelled).
  std::shared_ptr<shared_goals> shared;
  std::multiset<std::string> counted;
  ~scheduler_state() {
    if (!shared)
      return;
    for (auto& drv : counted)
      shared->remove_interest(drv);
    for (auto& [drv, e] : drv_goals) {
      if (!e.profile.empty())
        shared->withdraw(e.profile, drv, me);
      if (e.watch)
        shared->unwatch(e.watch);
    }
  }
  static inline const char* name = "scheduler";
};

using sched_ptr = scheduler_actor::stateful_pointer<scheduler_state>;

// scheduler.cpp
void emit(sched_ptr self, engine_event::kind_t kind, const std::string& drv, const std::string& text,
          build_status status = build_status::misc_failure);
// Starts the goal for `key` (or, with `may_join`, joins another run's).
void start_goal(sched_ptr self, const std::string& key, goal_entry& e, bool may_join = true);
// Records a goal's result and tells its waiters.
void finish_entry(sched_ptr self, const goal_key& key, build_result r);

// scheduler_runs.cpp
void count_interest(scheduler_state& st, const std::string& drv);
void uncount_interest(scheduler_state& st, const std::string& drv);
void withdraw_offer(scheduler_state& st, const std::string& drv, goal_entry& e);
// A joined goal's log lines no longer shown here.
void stop_watching(scheduler_state& st, goal_entry& e);
// The options a goal may be joined under by another run ("" = not at all).
std::string profile_of(build_options o);
// Asks the run that has a goal for `drv` (e.owner) for its outputs wanted here.
void join_goal(sched_ptr self, const std::string& drv, goal_entry& e);
caf::error cancelled_error();
// Cancelling: whether the goal holding `holder`'s requests is kept for another run.
bool kept(const scheduler_state& st, const caf::actor_addr& holder);
// Stops what nobody wants any more; called again while something is kept.
void cancel_all(sched_ptr self);

} // namespace kiln::scheduling
