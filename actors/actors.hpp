// The engine's actors (design.md, "Goals as actors"). Each spawn function
// is defined in the file of the same name.
#pragma once

#include "actors/engine.hpp"
#include "messages/interfaces.hpp"
#include "store/local/local_store.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>

namespace kiln {

class build_host;
class build_steps;
class shared_goals;

// How every Kiln process (kilnd, the embedded engine, kiln-worker) sets
// CAF's scheduler (actors/engine.cpp says why).
void set_scheduler(caf::actor_system_config& cfg);

// Detached: owns the store (database handle) and runs build_steps.
// The store and the steps (keys read, settings checked) are made by the
// caller, so a bad store or key file is reported before anything is spawned.
store_actor spawn_store_actor(caf::actor_system& sys, std::shared_ptr<local_store> store,
                              std::shared_ptr<build_steps> steps);
// Detached: log files are written with blocking I/O. `lines` (if set) gets
// every finished line of every build's log: (drv, line).
using line_sink = std::function<void(const std::string&, const std::string&)>;
logger_actor spawn_logger(caf::actor_system& sys, line_sink lines);
// Detached (actors/builder.cpp), on `host`.
// `reusable`: it serves round after round (on a worker); otherwise it ends
// with its round.
builder_actor spawn_builder(caf::actor_system& sys, logger_actor logger, std::shared_ptr<build_host> host,
                            bool reusable = false);
// Detached, one hook run each (actors/post_build_hook.cpp).
hook_actor spawn_post_build_hook(caf::actor_system& sys);
// With a `pool`, each build slot is also leased from it (kilnd); without,
// `max-jobs` alone limits the run (the embedded engine). With `shared`,
// the runs of one engine_host join each other's goals and a cancel spares
// what another run wants (shared_goals.hpp). The store actor, logger and
// substituters end with the scheduler, which ends once the run has its
// answer and no goal of it is left.
// With `workers`, builders are leased on kiln-worker processes; without,
// spawned in this process on `host`.
scheduler_actor spawn_scheduler(caf::actor_system& sys, store_actor store, substituter_actor substituters,
                                logger_actor logger, std::shared_ptr<build_host> host, worker_pool_actor workers,
                                build_options options, event_sink events, std::string store_real_dir,
                                slot_pool_actor pool = {}, std::shared_ptr<shared_goals> shared = {});
slot_pool_actor spawn_slot_pool(caf::actor_system& sys, uint32_t max_jobs);
// kilnd's kiln-worker processes (actors/worker_pool.cpp); needs the middleman.
worker_pool_actor spawn_worker_pool(caf::actor_system& sys, worker_options options);
// kilnd's root (actors/daemon_supervisor.cpp). After a stop the sessions
// drain for up to `drain` (builds under way finish; none if
// `cancel_builds`), then are hung up on and have `grace` to end; it ends
// normally when they all did, else with user_shutdown. It moves `phase`
// (daemon_context::stopping) along for the sessions.
struct supervisor_timing {
  std::chrono::seconds drain{60}, grace{10};
  bool cancel_builds = false;
};
supervisor_actor spawn_supervisor(caf::actor_system& sys, supervisor_timing timing, std::atomic<int>* phase);
// The substitution slots: up to max-substitution-jobs substituters, each
// on its own connection to `store`'s directory, what they copy rooted in
// `store`'s temp roots (a kilnd session's go when it ends). Without
// `workers` they are detached actors here; with, they are leased on
// kiln-worker processes, and a substitution whose worker was lost is tried
// again, up to max-build-retries times. Throws for bad trusted-public-keys
// before spawning anything.
substituter_actor spawn_substituter_pool(caf::actor_system& sys, const local_store& store,
                                         const build_options& options, worker_pool_actor workers = {});
// One path from whichever of the first `substituters` substituters of
// `pool` has it, as substituter_actor's subst_any (actors/substitute_any.cpp);
// it ends once it has answered.
using any_actor = caf::typed_actor<caf::replies_to<subst_any_atom, std::string, bool>::with<substitute_outcome>>;
any_actor spawn_substitute_any(caf::local_actor* parent, one_substituter_actor pool, uint32_t substituters);
// How long a goal waits for that answer: longer than the copies' own bound.
constexpr auto substitute_any_timeout = std::chrono::minutes(25 * 60);
// Bounds on the requests that stay inside one process, so that no request
// waits forever (issue 16); what ends a wait is its answer, or its peer's
// end (a monitor, or CAF's answer for a receiver that is gone), never
// these in a healthy run. The store actor's queries (a closure read, which
// outputs are valid):
constexpr auto store_query_timeout = std::chrono::minutes(60);
// Waits whose length is other builds' (an input's goal, a build slot, a
// run's answer): a year.
constexpr auto build_wait_timeout = std::chrono::minutes(365 * 24 * 60);
// Whether the message being handled came from an actor of this process. Any
// worker can address every kilnd actor whose handle a worker was ever sent
// (CAF's BASP; ../shared/spec/caf-0.17-worker-links.md), so those take
// their requests only from here. (An anonymous message may be a worker's.)
template <class Self>
bool sent_from_here(Self* self) {
  auto sender = self->current_sender();
  return sender && sender->node() == self->node();
}
// One substituter (detached) on the store at `layout`, rooting in `roots`;
// what the pool spawns here or a kiln-worker for kilnd. Throws for bad
// trusted-public-keys. Once `cancelled` is set, its downloads stop.
one_substituter_actor spawn_substituter(caf::actor_system& sys, store_layout layout, std::shared_ptr<temp_roots> roots,
                                        const build_options& options,
                                        std::shared_ptr<std::atomic<bool>> cancelled = nullptr);
// Spawned by the scheduler; they report (done_atom, build_result) to it.
// A derivation goal given its derivation already loaded (read ahead by a
// goal that needs it) starts from there.
caf::actor spawn_derivation_goal(caf::local_actor* parent, scheduler_actor scheduler, store_actor store,
                                 substituter_actor substituters, logger_actor logger, std::shared_ptr<build_host> host,
                                 worker_pool_actor workers, build_options options, goal_request request,
                                 std::string store_real_dir, std::optional<loaded_derivation> preloaded);
caf::actor spawn_substitution_goal(caf::local_actor* parent, scheduler_actor scheduler, store_actor store,
                                   substituter_actor substituter_pool, std::string path);

} // namespace kiln
