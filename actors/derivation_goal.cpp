// The derivation goal: one derivation's way from its .drv to valid outputs,
// in the reference's states, each a function below:
//   get_derivation -> have_derivation -> try_substitutes -> outputs_substituted ->
//   inputs_realised -> try_to_build -> start_round (1..n) -> done
// Store work goes to the store actor, inputs to the scheduler (which
// deduplicates goals), the run itself to a builder actor. The behaviour
// only takes the messages that can come at any time (cancel, more wanted
// outputs, lock retries); each state continues from a request's reply.
// Substitutes come from the substituter pool (also for --repair). The
// rounds of a build are in goal_rounds.cpp.
#include "actors/derivation_goal.hpp"
#include "sandbox/system_features.hpp"
#include "store/local/path_lock.hpp"
#include "store/format/store_path.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>

namespace kiln {

namespace goal {

// --repair hashes the outputs it is asked about, which may be large.
constexpr auto damage_check_timeout = std::chrono::minutes(60);

// With `read_ahead` (and no substituters, which may make the inputs
// unneeded) the derivations of the inputs come in the same request and go
// to the scheduler for their goals, so a deep graph costs one store round
// trip, not one per level.
void get_derivation(goal_ptr self, bool read_ahead) {
  if (read_ahead && self->state.options.substituters.empty()) {
    self->request(self->state.store, store_query_timeout, load_closure_atom::value, drv_path(self))
        .then(
            [=](std::vector<loaded_derivation>& all) {
              self->state.loaded = std::move(all.front());
              all.erase(all.begin());
              if (!all.empty())
                self->send(self->state.scheduler, preload_atom::value, std::move(all));
              have_derivation(self);
            },
            [=](caf::error& e) { done(self, ended(build_status::input_rejected, error_text(e))); });
    return;
  }
  self->request(self->state.store, store_query_timeout, load_atom::value, drv_path(self))
      .then([=](loaded_derivation& l) {
              self->state.loaded = std::move(l);
              have_derivation(self);
            },
            [=](caf::error& e) { done(self, ended(build_status::input_rejected, error_text(e))); });
}

void have_derivation(goal_ptr self) {
  auto& st = self->state;
  for (auto& name : st.request.outputs)
    if (!st.loaded.drv.outputs.count(name))
      return done(self, ended(build_status::input_rejected,
                                "derivation '" + drv_path(self) + "' does not have an output named '" + name + "'"));
  if (st.options.mode == build_mode::normal && wanted_all_valid(self)) {
    return done(self, ended(build_status::already_valid));
  }
  if (st.options.mode == build_mode::check) {
    for (auto& [name, valid] : st.loaded.output_valid)
      if (!valid)
        return done(self, ended(build_status::misc_failure,
                                  "some outputs of '" + drv_path(self) + "' are not valid, so checking is not possible"));
  }
  if (st.options.mode == build_mode::repair)
    return find_damage(self);
  // Substitutes for invalid outputs first; with no substituters this is
  // the reference's "no substituters" path, straight on to the inputs.
  if (st.options.mode == build_mode::normal && !st.options.substituters.empty())
    return try_substitutes(self);
  outputs_substituted(self);
}

// --repair: valid outputs are rebuilt only if their contents are damaged
// (as Nix's); the inputs are realised in repair mode either way, so damage
// further down is repaired by their goals.
void find_damage(goal_ptr self) {
  auto& st = self->state;
  if (!wanted_all_valid(self)) {
    st.repair_needed = true;
    return outputs_substituted(self);
  }
  std::vector<std::string> outputs;
  for (auto& name : wanted_outputs(self))
    say(self, "checking path '" + outputs.emplace_back(st.loaded.drv.outputs.at(name).path) + "'...");
  self->request(st.store, damage_check_timeout, damaged_atom::value, outputs)
      .then(
          [=](const std::vector<std::string>& damaged) {
            auto& now = self->state;
            for (auto& path : damaged) {
              say(self, "path '" + path + "' is corrupted or missing!");
              for (auto& [name, out] : now.loaded.drv.outputs)
                if (out.path == path)
                  now.damaged.insert(name);
            }
            now.repair_needed = !damaged.empty();
            // As Nix: a substituter with the same contents repairs them
            // first; what none repairs is rebuilt.
            if (now.repair_needed && !now.options.substituters.empty())
              return try_substitutes(self);
            outputs_substituted(self);
          },
          [=](caf::error& e) { done(self, ended(build_status::misc_failure, error_text(e))); });
}

// What is still missing of the wanted outputs (invalid, or damaged in a
// repair).
std::vector<std::string> missing_outputs(goal_ptr self) {
  auto& st = self->state;
  std::vector<std::string> missing;
  for (auto& name : wanted_outputs(self))
    if (!st.loaded.output_valid[name] || st.damaged.count(name))
      missing.push_back(name);
  return missing;
}

// All wanted outputs valid -> Substituted, else build, unless a substitute
// failed (as Nix: a broken substitute is not silently replaced by a build
// without --fallback).
void substitutes_tried(goal_ptr self) {
  auto& st = self->state;
  // Damaged outputs repaired from a substituter were valid all along (Nix
  // says AlreadyValid, checked side by side).
  if (missing_outputs(self).empty())
    return done(self, ended(st.options.mode == build_mode::repair && !st.substituted_invalid
                                ? build_status::already_valid
                                : build_status::substituted));
  if (st.cancelled)
    return done(self, cancelled_result(drv_path(self)));
  if (st.substituter_failed && !st.options.fallback)
    return done(self, ended(build_status::transient_failure,
                              "some substitutes for the outputs of derivation '" + drv_path(self) +
                                  "' failed (usually happens due to networking issues); try '--fallback' "
                                  "to build derivation from source"));
  outputs_substituted(self);
}

// Every wanted output still invalid, at once, each from whichever
// substituter has it (substitute_any.cpp).
void try_substitutes(goal_ptr self) {
  auto& st = self->state;
  auto missing = missing_outputs(self);
  if (missing.empty() || st.cancelled)
    return substitutes_tried(self);
  st.pending = missing.size();
  for (auto& name : missing) {
    auto after = [=] {
      if (--self->state.pending == 0)
        substitutes_tried(self);
    };
    bool repair = st.damaged.count(name) > 0;
    self->request(st.substituters, substitute_any_timeout, subst_any_atom::value, st.loaded.drv.outputs.at(name).path,
                  repair)
        .then(
            [=](const substitute_outcome& o) {
              auto& now = self->state;
              for (auto& line : o.notices)
                say(self, line);
              if (o.kind == substitute_outcome::substituted) {
                self->send(now.scheduler, copied_atom::value, o.copied, o.from);
                if (!now.loaded.output_valid[name])
                  now.substituted_invalid = true;
                now.loaded.output_valid[name] = true;
                now.damaged.erase(name);
              } else if (o.kind == substitute_outcome::failed) {
                now.substituter_failed = true;
              }
              after();
            },
            [=](caf::error& e) {
              say(self, "error: " + error_text(e));
              self->state.substituter_failed = true;
              after();
            });
  }
}

void input_finished(goal_ptr self, const build_result& r) {
  auto& st = self->state;
  // An input stopped because something else failed did not fail itself.
  if (!is_success(r.status) && !r.cancelled)
    ++st.failed_inputs;
  if (--st.pending == 0)
    inputs_realised(self);
}

void outputs_substituted(goal_ptr self) {
  auto& st = self->state;
  const derivation& drv = st.loaded.drv;
  st.pending = drv.input_drvs.size() + drv.input_srcs.size();
  if (st.pending == 0)
    return inputs_realised(self);
  for (auto& [input, outputs] : drv.input_drvs) {
    self->request(st.scheduler, build_wait_timeout, want_atom::value, goal_request{input, outputs}, false)
        .then([=](build_result& r) { input_finished(self, r); },
              [=](caf::error& e) { input_finished(self, ended(build_status::misc_failure, error_text(e))); });
  }
  for (auto& src : drv.input_srcs) {
    self->request(st.scheduler, build_wait_timeout, want_path_atom::value, src)
        .then([=](build_result& r) { input_finished(self, r); },
              [=](caf::error& e) { input_finished(self, ended(build_status::misc_failure, error_text(e))); });
  }
}

void inputs_realised(goal_ptr self) {
  auto& st = self->state;
  // A goal whose input failed has failed, cancelled or not (Nix's words).
  if (st.failed_inputs)
    return done(self, ended(build_status::dependency_failed,
                              std::to_string(st.failed_inputs) + " dependencies of derivation '" +
                                  drv_path(self) + "' failed to build"));
  if (st.cancelled)
    return done(self, cancelled_result(drv_path(self)));
  std::optional<std::string> refusal;
  try {
    refusal = sandbox::host_refusal(st.loaded.drv, drv_path(self), st.options.system_features);
  } catch (const std::exception& e) {
    refusal = "derivation '" + drv_path(self) + "': " + e.what();
  }
  if (refusal)
    return done(self, ended(build_status::input_rejected, *refusal));
  try_to_build(self);
}

// Output locks: another process (Kiln or Nix) building the same outputs
// holds them; we wait, and if it built them, there is nothing left to do.
bool take_locks(goal_ptr self) {
  auto& st = self->state;
  std::vector<path_lock> got;
  for (auto& [name, out] : st.loaded.drv.outputs) {
    if (out.path.empty())
      continue;
    std::string real = st.store_real_dir + "/" + std::string(parse_store_path(out.path).base_name());
    auto l = path_lock::try_acquire(real);
    if (!l.held())
      return false; // the ones we got are released as `got` goes
    got.push_back(std::move(l));
  }
  st.locks = std::move(got);
  return true;
}

void try_to_build(goal_ptr self) {
  auto& st = self->state;
  if (st.cancelled)
    return done(self, cancelled_result(drv_path(self)));
  if (st.options.mode == build_mode::repair && !st.repair_needed) {
    return done(self, ended(build_status::already_valid));
  }
  bool locked = false;
  try {
    locked = take_locks(self);
  } catch (const std::exception& e) {
    return done(self, ended(build_status::misc_failure, e.what()));
  }
  if (!locked) {
    if (!st.waiting_noted) {
      st.waiting_noted = true;
      self->send(st.scheduler, status_atom::value, drv_path(self),
                 std::string("waiting for another process to finish building '" + drv_path(self) + "'"));
    }
    self->delayed_send(self, std::chrono::milliseconds(50), retry_atom::value);
    return;
  }
  self->request(st.scheduler, build_wait_timeout, slot_atom::value)
      .then(
          [=](uint64_t lease) {
            self->state.has_lease = true;
            self->state.lease = lease;
            if (self->state.cancelled)
              return done(self, cancelled_result(drv_path(self)));
            self->state.start_time = std::time(nullptr);
            start_round(self);
          },
          [=](caf::error& e) {
            done(self, e == engine_errc::cancelled ? cancelled_result(drv_path(self))
                                                   : ended(build_status::misc_failure, error_text(e)));
          });
}

void done(goal_ptr self, build_result r) {
  auto& st = self->state;
  // Leased while the round was described, and not used (the outputs were
  // there, or a cancel came).
  give_back(self, !st.applied);
  if (st.has_lease) {
    self->send(st.scheduler, release_atom::value, st.lease);
    st.has_lease = false;
  }
  // Once the outputs are valid their lock files are of no more use: removed
  // (under the lock, marked stale for a waiter), as Nix removes them.
  bool outputs_valid = r.status == build_status::built || r.status == build_status::already_valid;
  for (auto& l : st.locks)
    l.release(outputs_valid);
  st.locks.clear();
  // Someone asked for more outputs after AlreadyValid was decided: look again.
  if (r.status == build_status::already_valid && !wanted_all_valid(self) && !st.cancelled) {
    st.round = 0;
    return get_derivation(self, false);
  }
  r.path = drv_path(self);
  r.start_time = st.start_time ? st.start_time : r.start_time;
  r.stop_time = st.start_time ? std::time(nullptr) : 0;
  if (r.status == build_status::already_valid || r.status == build_status::built ||
      r.status == build_status::substituted)
    for (auto& [name, out] : st.loaded.drv.outputs)
      if (!out.path.empty() && !r.outputs.count(name))
        r.outputs[name] = out.path;
  self->send(st.scheduler, done_atom::value, std::move(r));
  self->quit();
}

caf::behavior derivation_goal(goal_ptr self, scheduler_actor scheduler, store_actor store,
                              substituter_actor substituters, logger_actor logger, std::shared_ptr<build_host> host,
                              worker_pool_actor workers, build_options options, goal_request request, std::string store_real_dir,
                              std::optional<loaded_derivation> preloaded) {
  auto& st = self->state;
  st.scheduler = std::move(scheduler);
  st.store = std::move(store);
  st.substituters = std::move(substituters);
  st.logger = std::move(logger);
  st.host = std::move(host);
  st.options = std::move(options);
  st.request = std::move(request);
  st.store_real_dir = std::move(store_real_dir);
  st.workers = std::move(workers);
  st.rounds = 1 + st.options.repeat;
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& state = self->state;
    if (state.builder && dm.source == state.builder.address())
      worker_lost(self, "its builder went down: " + self->system().render(dm.reason));
  });
  if (preloaded) {
    st.loaded = std::move(*preloaded);
    self->send(self, preload_atom::value); // goes on from have_derivation once running
  } else {
    get_derivation(self, true);
  }
  return {
      [=](preload_atom) { have_derivation(self); },
      [=](retry_atom) { try_to_build(self); },
      [=](add_outputs_atom, const std::set<std::string>& more) {
        merge_outputs(self->state.request.outputs, more);
      },
      [=](cancel_atom) {
        auto& state = self->state;
        state.cancelled = true;
        if (state.builder) {
          cancel_builder(self);
        } else if (state.leasing) {
          ++state.attempt; // the builder still to come is sent away
          if (!state.describing) // else done once described
            done(self, cancelled_result(drv_path(self)));
        } else if (!state.has_lease && state.pending == 0 && state.locks.empty()) {
          done(self, cancelled_result(drv_path(self)));
        }
      },
  };
}

} // namespace goal

caf::actor spawn_derivation_goal(caf::local_actor* parent, scheduler_actor scheduler, store_actor store,
                                 substituter_actor substituters, logger_actor logger, std::shared_ptr<build_host> host,
                                 worker_pool_actor workers, build_options options, goal_request request,
                                 std::string store_real_dir, std::optional<loaded_derivation> preloaded) {
  return parent->spawn(goal::derivation_goal, std::move(scheduler), std::move(store), std::move(substituters),
                       std::move(logger), std::move(host), std::move(workers), std::move(options),
                       std::move(request), std::move(store_real_dir), std::move(preloaded));
}

} // namespace kiln
