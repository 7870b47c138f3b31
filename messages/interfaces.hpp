// The engine's atoms and typed actor interfaces, in one place, so a reader
// sees every conversation between actors here (design.md, "Goals as actors").
#pragma once

#include "messages/build_types.hpp"

#include "caf/all.hpp"

#include <string>
#include <vector>

namespace kiln {

// Scheduler
using want_atom = caf::atom_constant<caf::atom("want")>;       // realise a derivation's outputs
using want_path_atom = caf::atom_constant<caf::atom("wantpath")>; // make a store path valid
using slot_atom = caf::atom_constant<caf::atom("slot")>;       // lease a build slot
using release_atom = caf::atom_constant<caf::atom("release")>; // give a lease back
using done_atom = caf::atom_constant<caf::atom("done")>;       // a goal has its result
using status_atom = caf::atom_constant<caf::atom("status")>;   // goal -> scheduler: what it is doing
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;   // stop: another build failed
using add_outputs_atom = caf::atom_constant<caf::atom("addouts")>; // merge wanted outputs
using notice_atom = caf::atom_constant<caf::atom("notice")>;   // goal -> scheduler: a line for the user
using copied_atom = caf::atom_constant<caf::atom("copied")>;   // goal -> scheduler: paths a substituter copied
// Post-build hook
using hook_atom = caf::atom_constant<caf::atom("hook")>;
// Store actor
using load_atom = caf::atom_constant<caf::atom("load")>;
using load_closure_atom = caf::atom_constant<caf::atom("loadclos")>;
using invalid_atom = caf::atom_constant<caf::atom("invalid")>;
using damaged_atom = caf::atom_constant<caf::atom("damaged")>;
using subst_atom = caf::atom_constant<caf::atom("subst")>;
using probe_atom = caf::atom_constant<caf::atom("probe")>;
using subst_any_atom = caf::atom_constant<caf::atom("substany")>;
using describe_atom = caf::atom_constant<caf::atom("describe")>; // a build round, for a builder
using register_atom = caf::atom_constant<caf::atom("register")>; // judge a builder's report, register
// Builder
using run_atom = caf::atom_constant<caf::atom("run")>;
using started_atom = caf::atom_constant<caf::atom("started")>;
using output_atom = caf::atom_constant<caf::atom("output")>;
using exited_atom = caf::atom_constant<caf::atom("exited")>;
using limit_atom = caf::atom_constant<caf::atom("limit")>;
using usage_atom = caf::atom_constant<caf::atom("usage")>;
// Logger
using log_open_atom = caf::atom_constant<caf::atom("logopen")>;
using log_atom = caf::atom_constant<caf::atom("log")>;
using log_close_atom = caf::atom_constant<caf::atom("logclose")>;
// Goals
using retry_atom = caf::atom_constant<caf::atom("retry")>;
using preload_atom = caf::atom_constant<caf::atom("preload")>; // goal -> scheduler: derivations read ahead

// Owns the store database; every store step of a goal goes through it.
using store_actor = caf::typed_actor<
    caf::replies_to<load_atom, std::string>::with<loaded_derivation>,
    // The derivation first, then those of its inputs, transitively, down to
    // the ones whose outputs are all valid (their inputs are not needed).
    caf::replies_to<load_closure_atom, std::string>::with<std::vector<loaded_derivation>>,
    // The paths among these that are not valid.
    caf::replies_to<invalid_atom, std::vector<std::string>>::with<std::vector<std::string>>,
    // The valid paths among these whose contents no longer hash to their
    // record (or that are missing): what --repair must make again.
    caf::replies_to<damaged_atom, std::vector<std::string>>::with<std::vector<std::string>>,
    // What a builder needs for this round (with `recheck`, output names,
    // first whether those are still invalid: already_valid says they are not).
    caf::replies_to<describe_atom, build_round, std::set<std::string> /*recheck*/>::with<build_request>,
    // The round's result from the builder's report; outputs registered in
    // the last round (one transaction), a failed run's invalid outputs removed.
    caf::replies_to<register_atom, build_request, build_report>::with<build_result>>;

// Substitution (issue 17): substituter number N (in priority order) makes
// a path valid from its cache (with `repair`, replaces a valid path's
// damaged contents with its own), or says why not; a copy that fails
// (content not matching its record) is an error. A probe asks the same
// without copying (lookups and signatures only): the answer is
// `available`, or why not. One such actor works on its own store
// connection, in kilnd's process or in a kiln-worker.
using one_substituter_actor =
    caf::typed_actor<caf::replies_to<subst_atom, std::string, uint32_t, bool /*repair*/>::with<substitute_outcome>,
                     caf::replies_to<probe_atom, std::string, uint32_t>::with<substitute_outcome>>;

// A run's substituters (actors/substituter_pool.cpp): at most
// max-substitution-jobs copies and probes at once on one_substituters, so
// downloads neither queue behind the store actor nor hold it up; and the
// path from whichever substituter has it (actors/substitute_any.cpp):
// `substituted`, `absent` (none has it: the reasons in `message`) or
// `failed` (one that had it failed to give it), with `notices` for the user.
using substituter_actor = one_substituter_actor::extend<
    caf::replies_to<subst_any_atom, std::string, bool /*repair*/>::with<substitute_outcome>>;

// Writes build logs (and with -L shows their lines), one file per build.
using logger_actor = caf::typed_actor<
    caf::reacts_to<log_open_atom, std::string /*drv*/, std::string /*file*/, std::string /*compression*/>,
    // Replies with the number of bytes written once they are: the builder
    // keeps a window of unacknowledged log bytes (back-pressure).
    caf::replies_to<log_atom, std::string /*drv*/, std::string /*bytes*/>::with<uint64_t>,
    // Replies once the log is closed, so every line sent before it has
    // been written and shown when the build's outcome goes out.
    caf::replies_to<log_close_atom, std::string /*drv*/>::with<bool>>;

// The builder's side of a build round (design.md: applied where the build
// runs): prepares the build directory, build user and sandbox, runs the
// builder under its limits, and scans what it produced; reports it. It
// sends the build's log lines; the goal opens the log before the round and
// closes it when the report comes (after every line, which left before the
// report). Then,
// once the store's side has judged the report, it releases what the round
// holds (keeping a failed build's directory if asked: the reply is the note
// saying where). One round at a time, each with its number (a builder on a
// worker serves many): a release or cancel of another round does nothing.
using builder_actor = caf::typed_actor<
    caf::replies_to<run_atom, uint64_t /*round*/, build_request>::with<build_report>,
    caf::replies_to<release_atom, uint64_t /*round*/, bool /*keep the build directory*/>::with<std::string>,
    caf::reacts_to<cancel_atom, uint64_t /*round*/>>;

// The goal table and the build slots.
using scheduler_actor = caf::typed_actor<
    caf::replies_to<want_atom, goal_request, bool /*top level*/>::with<build_result>,
    // Every top-level goal at once; answers with every goal's result
    // (dependencies included) once the last top-level goal is done.
    caf::replies_to<want_atom, std::vector<goal_request>>::with<std::vector<build_result>>,
    caf::replies_to<want_path_atom, std::string>::with<build_result>,
    caf::replies_to<slot_atom>::with<uint64_t>,
    caf::reacts_to<release_atom, uint64_t>,
    caf::reacts_to<done_atom, build_result>,
    caf::reacts_to<status_atom, std::string /*drv*/, std::string /*what*/>,
    // Shown to the user as it is (the post-build hook's lines).
    caf::reacts_to<notice_atom, std::string /*drv*/, std::string /*line*/>,
    // Paths a substituter copied for a goal (references first), and its URI.
    caf::reacts_to<copied_atom, std::vector<std::string>, std::string>,
    // A goal's post-build hook: started (its program), then ended (what it printed).
    caf::reacts_to<hook_atom, std::string /*drv*/, std::string /*program*/>,
    caf::reacts_to<hook_atom, std::string /*drv*/, std::string /*program*/, std::string /*output*/>,
    // Derivations a goal read ahead for the goals of its inputs.
    caf::reacts_to<preload_atom, std::vector<loaded_derivation>>,
    // SIGINT or SIGTERM: every goal is cancelled (builders killed, build
    // directories removed) and the run ends.
    caf::reacts_to<cancel_atom>>;

// The daemon's build slots, shared by the schedulers of all its clients'
// runs: `max-jobs` of kilnd's own configuration in all, granted to the
// schedulers waiting in turn (one each, round and round), so a client with
// a thousand builds queued takes a turn like a client with one. A lease
// comes back when released or when its scheduler is gone.
using slot_pool_actor = caf::typed_actor<caf::replies_to<slot_atom>::with<uint64_t>,
                                         caf::reacts_to<release_atom, uint64_t>>;

// kilnd's supervisor, the root of its actors (actors/daemon_supervisor.cpp).
using session_atom = caf::atom_constant<caf::atom("session")>;   // a session actor began
using stop_atom = caf::atom_constant<caf::atom("stop")>;         // SIGTERM or SIGINT
using deadline_atom = caf::atom_constant<caf::atom("deadline")>; // the sessions took too long to end
using supervisor_actor = caf::typed_actor<
    // The session actor serving the connection on this descriptor: watched,
    // and the descriptor closed when it ends (not before, so a hang-up never
    // reaches a descriptor the number was reused for).
    caf::reacts_to<session_atom, caf::actor, int>,
    // Hang up on every client (their builds are cancelled as for a client
    // that went away); end once every session has, or at the deadline.
    caf::reacts_to<stop_atom>,
    caf::reacts_to<deadline_atom>>;

// Worker processes (actors/worker_pool.cpp in kilnd, actors/worker_main.cpp
// in kiln-worker), linked by CAF's BASP over an inherited socketpair.
using hello_atom = caf::atom_constant<caf::atom("hello")>;   // kilnd -> worker: your front in kilnd
using spawn_atom = caf::atom_constant<caf::atom("spawn")>;   // kilnd -> worker: a builder for one round
using lease_atom = caf::atom_constant<caf::atom("lease")>;   // goal -> pool: a builder on a live worker
using restart_atom = caf::atom_constant<caf::atom("restart")>; // pool: start worker N again (after its backoff)
using reaped_atom = caf::atom_constant<caf::atom("reaped")>; // pool: a worker process ended (pid, wait status)

// What kilnd sees of a kiln-worker: its one front actor. The worker is
// given one kilnd actor, `front` (a logger_actor that checks every message
// against the rounds leased on that worker), watches it, and ends (its
// builds killed) when it goes.
// A substituter there works on the store under `root` with a run's
// options (its substituters, keys, download settings; no secret keys), on a
// connection of its own: downloads, decompression and unpacking of what a
// cache sends happen in the worker.
// `cancel`: the run that asked for that substituter has ended; its
// download stops now (it may be stuck in a silent cache), then it ends.
using worker_actor = caf::typed_actor<caf::replies_to<hello_atom, logger_actor>::with<int32_t /*pid*/>,
                                      caf::replies_to<spawn_atom>::with<builder_actor>,
                                      caf::replies_to<spawn_atom, std::string /*root*/, build_options>::with<one_substituter_actor>,
                                      caf::reacts_to<cancel_atom, one_substituter_actor>>;

// A worker's front in kilnd (actors/worker_front.cpp): the logger the
// worker is given, checking every message against the rounds leased on
// it, and, for kilnd's own actors, `flushed` (answered once everything the
// worker sent before it has been passed on: the goal closes a round's log
// behind it) and `forget` (the round with this lease number has ended:
// nothing more of it passes; after whatever it sent before it ended).
using flushed_atom = caf::atom_constant<caf::atom("flushed")>;
using forget_atom = caf::atom_constant<caf::atom("forget")>;
//
// A goal's requests to its builder on the worker go through the front too
// (`run`, `release`, `cancel`, with the builder and the bound the front
// waits for it): the worker then sees the front as their sender, not each
// goal, so it makes no proxy of every goal (one monitor and one down
// message fewer on the link per goal), and the report comes back behind
// every line the builder sent before it. Only from kilnd's own actors.
using worker_front_actor = logger_actor::extend<
    caf::replies_to<flushed_atom>::with<bool>, caf::reacts_to<forget_atom, std::string /*drv*/, uint64_t /*lease*/>,
    caf::replies_to<run_atom, builder_actor, uint64_t /*round*/, build_request, caf::timespan>::with<build_report>,
    caf::replies_to<release_atom, builder_actor, uint64_t /*round*/, bool /*keep*/, caf::timespan>::with<std::string>,
    caf::reacts_to<cancel_atom, builder_actor, uint64_t /*round*/>,
    // And the worker pool's requests to the worker (its hello, a builder,
    // a substituter, a substituter's cancel): the pool, whose end is every
    // worker's, is never seen by one.
    caf::replies_to<hello_atom>::with<int32_t /*pid*/>, caf::replies_to<spawn_atom>::with<builder_actor>,
    caf::replies_to<spawn_atom, std::string /*root*/, build_options>::with<one_substituter_actor>,
    caf::reacts_to<cancel_atom, one_substituter_actor>,
    // And a run's substituter pool's to a substituter on the worker, with
    // the bound the front waits for it: the worker sees the front ask, so
    // no worker holds the pool's handle (an exit message to it would end
    // that client's run).
    caf::replies_to<subst_atom, one_substituter_actor, std::string, uint32_t, bool /*repair*/,
                    caf::timespan>::with<substitute_outcome>,
    caf::replies_to<probe_atom, one_substituter_actor, std::string, uint32_t, caf::timespan>::with<substitute_outcome>>;

// kilnd's worker processes: a builder for one round of `drv` on a live
// worker, with fewest rounds, that worker's front, and the lease's number
// (the round's number for the builder); its log lines go to `logger` (the
// run's, where the goal opened the round's log). The goal
// watches the builder: when it goes down before it reported, the worker
// was lost. When the round is over the goal gives the lease back (`release`):
// the builder serves another round, or (not `reusable`: it did not answer
// as it should) is ended. A goal that ends holding a lease gives it back so.
using worker_pool_actor = caf::typed_actor<
    caf::replies_to<lease_atom, std::string /*drv*/, logger_actor>::with<
        builder_actor, worker_front_actor, uint64_t>,
    caf::reacts_to<release_atom, uint64_t /*lease*/, bool /*reusable*/>,
    // A substituter on the live worker with fewest, for a run's substituter
    // pool, and that worker's front, through which the pool asks it; the
    // pool watches it (down: the worker was lost).
    caf::replies_to<lease_atom, std::string /*store root*/, build_options>::with<one_substituter_actor,
                                                                                 worker_front_actor>,
    // The run's pool that leased it has ended: told to its worker.
    caf::reacts_to<cancel_atom, one_substituter_actor>,
    caf::reacts_to<restart_atom, uint32_t>, caf::reacts_to<reaped_atom, int32_t, int32_t>,
    // kilnd is stopping: every worker ends (its link is cut; one that has
    // not ended by the deadline is killed, with its builds). Answered when
    // all have, with how many had to be killed.
    caf::replies_to<stop_atom>::with<uint32_t>, caf::reacts_to<deadline_atom>>;

// Runs the post-build hook once (on a thread of its own: it blocks while
// the hook runs) with OUT_PATHS and DRV_PATH set; replies with what the
// hook printed (stdout and stderr), or hook_failed naming the program and
// its exit status (the context then holds the message and the output).
using hook_actor = caf::typed_actor<
    caf::replies_to<hook_atom, std::string /*program*/, std::string /*drv*/, std::vector<std::string> /*outputs*/>::with<
        std::string>>;

// Error category for failures that are values between actors.
// input_rejected: the store found the derivation unbuildable while describing it.
// hook_failed: the post-build hook exited with a failure.
// builder_failure: the builder's side failed at its own work (releasing a round).
// worker_lost: the worker process running a round died or stopped answering
//   (not the build's fault: the round is tried again elsewhere).
// no_workers: no worker process is running, and none could be started.
enum class engine_errc : uint8_t {
  no_build_slots = 1, cancelled, store_failure, input_rejected, hook_failed, builder_failure, worker_lost, no_workers
};

// The text of an engine error (its context's first string, or its rendering).
std::string error_text(const caf::error& e);

} // namespace kiln

CAF_ERROR_CODE_ENUM(kiln::engine_errc, "kiln")

namespace kiln {
std::string to_string(engine_errc e);
// Registers every message type and the error category. Every process that
// takes part in builds calls this on its config.
void add_message_types(caf::actor_system_config& cfg);
} // namespace kiln
