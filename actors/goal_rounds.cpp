// A derivation goal's build, round by round: the store actor describes the
// round (a build_request), a builder applies it — spawned here, or leased
// on one of kilnd's worker processes — and reports; the store actor judges
// the report and registers; the builder releases the round. A worker lost
// mid-round (its builder goes down before it reported) is not the build's
// fault: the round is tried again on another worker, max-build-retries
// times. Then the post-build hook, and done.
#include "actors/derivation_goal.hpp"

#include <algorithm>

namespace kiln::goal {

namespace {

// The logger writes a local file: an answer later than this means it is stuck.
constexpr auto log_close_timeout = std::chrono::minutes(5);
// A hook may upload what it built; this long and no answer means it hangs.
constexpr auto post_build_hook_timeout = std::chrono::minutes(60);
// Releasing a round removes its build directory and sandbox store, which
// may be large.
constexpr auto builder_release_timeout = std::chrono::minutes(60);
// The store actor describing a round (the input closure, the sandbox
// paths) or registering it (its outputs synced to disk, which for large
// outputs takes a while).
constexpr auto store_step_timeout = std::chrono::minutes(60);
// A lease waits for a worker to be (re)started, at most this long.
constexpr auto lease_timeout = std::chrono::minutes(2);

// How long a builder may take to report on its round: the build's own
// timeout and an hour for preparing and scanning, or 30 days for a build
// without one. A lost worker is noticed long before, by the link's
// heartbeat and the builder's monitor; this only bounds the request.
std::chrono::seconds run_bound(const build_options& o) {
  using namespace std::chrono;
  return o.timeout ? seconds(o.timeout) + hours(1) : duration_cast<seconds>(hours(24 * 30));
}

// A request to the round's builder: on a worker, through the worker's
// front (worker_front_actor says why), else straight to it.
template <class OnAnswer, class OnError, class Atom, class... Ts>
void ask_builder(goal_ptr self, caf::timespan bound, OnAnswer on_answer, OnError on_error, Atom atom, Ts... xs) {
  auto& st = self->state;
  if (st.front)
    self->request(st.front, bound, atom, st.builder, xs..., bound).then(std::move(on_answer), std::move(on_error));
  else
    self->request(st.builder, bound, atom, xs...).then(std::move(on_answer), std::move(on_error));
}

void apply_round(goal_ptr self);
void finish_round(goal_ptr self, build_report report);
void release_round(goal_ptr self, build_result r, bool keep);
void round_released(goal_ptr self, std::string note);
void close_log(goal_ptr self);

build_round this_round(goal_ptr self) {
  auto& st = self->state;
  return build_round{drv_path(self), st.loaded.drv, st.round, st.rounds, st.options.mode};
}

// No builder came from the workers.
void lease_failed(goal_ptr self, const caf::error& e) {
  if (self->state.cancelled)
    return done(self, cancelled_result(drv_path(self)));
  if (e == engine_errc::no_workers)
    return done(self, ended(build_status::misc_failure, error_text(e)));
  worker_lost(self, "no builder from a worker: " + error_text(e));
}

// A builder leased on one of kilnd's workers. Asked for while the store
// describes the round (the two overlap); the round is applied once both
// have come.
void lease_builder(goal_ptr self) {
  auto& st = self->state;
  uint64_t attempt = ++st.attempt;
  st.leasing = true;
  self->request(st.workers, lease_timeout, lease_atom::value, drv_path(self), st.logger)
      .then(
          [=](builder_actor& b, worker_front_actor& front, uint64_t lease) {
            auto& state = self->state;
            if (attempt == state.attempt)
              state.leasing = false;
            if (attempt != state.attempt || state.cancelled) {
              self->send(state.workers, release_atom::value, lease, true); // it ran nothing
              if (attempt == state.attempt && !state.describing)
                done(self, cancelled_result(drv_path(self)));
              return;
            }
            state.builder = b;
            state.front = std::move(front);
            state.round_id = lease;
            self->monitor(b); // down before it reported: its worker was lost
            if (!state.describing)
              apply_round(self);
          },
          [=](caf::error& e) {
            auto& state = self->state;
            if (attempt != state.attempt)
              return;
            state.leasing = false;
            if (state.describing)
              state.lease_error = std::move(e); // told once the round is described
            else
              lease_failed(self, e);
          });
}

// The described round on a builder of its own: in this process, or on a
// worker (leased already, on its way, or asked for now).
void run_round(goal_ptr self) {
  auto& st = self->state;
  st.reported = false;
  if (!st.workers) {
    st.front = nullptr;
    st.round_id = 0; // the builder serves this round only
    st.builder = spawn_builder(self->system(), st.logger, st.host);
    self->link_to(st.builder); // a goal that dies takes its round with it
    return apply_round(self);
  }
  if (st.builder)
    return apply_round(self);
  if (auto e = std::move(st.lease_error)) {
    st.lease_error.reset();
    return lease_failed(self, *e);
  }
  if (!st.leasing)
    lease_builder(self);
}

void apply_round(goal_ptr self) {
  auto& st = self->state;
  st.applied = true;
  uint64_t attempt = ++st.attempt;
  // Opened here, ahead of every line the builder will send (a worker names
  // no file); closed once the builder reported.
  self->send(st.logger, log_open_atom::value, drv_path(self), st.current.log_path,
             st.current.options.compress_build_log);
  ask_builder(
      self, run_bound(st.options),
      [=](build_report& report) {
        auto& state = self->state;
        if (attempt != state.attempt)
          return;
        state.reported = true;
        close_log(self);
        if (report.released) // the builder holds nothing more: no loss now
          give_back(self, true);
        finish_round(self, std::move(report));
      },
      [=](caf::error& e) {
        auto& state = self->state;
        if (attempt != state.attempt)
          return;
        if (e == caf::sec::request_timeout)
          cancel_builder(self);
        // No report: what the builder does now is not known, so it
        // serves no other round once this one is released.
        state.builder_spoiled = true;
        release_round(self, ended(build_status::misc_failure, error_text(e)), false);
      },
      run_atom::value, st.round_id, st.current);
}

// Judged (and in the last round registered) by the store actor; then the
// builder releases the round (keeping a failed build's directory if asked).
void finish_round(goal_ptr self, build_report report) {
  auto& st = self->state;
  self->request(st.store, store_step_timeout, register_atom::value, st.current, report)
      .then(
          [=](build_result& r) {
            bool keep = !is_success(r.status) && self->state.options.keep_failed;
            release_round(self, std::move(r), keep);
          },
          [=](caf::error& e) { release_round(self, ended(build_status::misc_failure, error_text(e)), false); });
}

void release_round(goal_ptr self, build_result r, bool keep) {
  auto& st = self->state;
  st.releasing = std::move(r);
  if (!st.builder)
    return round_released(self, "");
  uint64_t attempt = ++st.attempt;
  ask_builder(
      self, builder_release_timeout,
      [=](const std::string& note) {
        if (attempt != self->state.attempt)
          return;
        give_back(self, true);
        round_released(self, note);
      },
      [=](caf::error& e) {
        auto& state = self->state;
        if (attempt != state.attempt)
          return;
        give_back(self, false);
        if (is_success(state.releasing->status))
          state.releasing = ended(build_status::misc_failure, error_text(e));
        round_released(self, "");
      },
      release_atom::value, st.round_id, keep);
}

// The builder has reported, so every line it sent went ahead of the
// report: the log is closed behind them (through the worker's front, which
// passes them on) while the store judges the report. A client must not
// hear that the build ended before its last lines, nor read a log that
// is not finished.
void close_log(goal_ptr self) {
  auto& st = self->state;
  st.log_closing = true;
  auto closed = [self] {
    auto& state = self->state;
    state.log_closing = false;
    if (auto note = std::move(state.released_note)) {
      state.released_note.reset();
      round_released(self, std::move(*note));
    }
  };
  auto close = [self, closed] {
    self->request(self->state.logger, log_close_timeout, log_close_atom::value, drv_path(self))
        .then([closed](bool) { closed(); }, [closed](caf::error&) { closed(); });
  };
  if (!st.front)
    return close();
  self->request(st.front, log_close_timeout, flushed_atom::value)
      .then([close](bool) { close(); }, [close](caf::error&) { close(); });
}

// Then the next round, the post-build hook, or done.
void round_released(goal_ptr self, std::string note) {
  auto& st = self->state;
  if (st.log_closing) {
    st.released_note = std::move(note);
    return;
  }
  give_back(self, true);
  build_result r = std::move(*st.releasing);
  st.releasing.reset();
  if (!note.empty())
    r.error += "\n" + note;
  if (r.status == build_status::built && st.round < st.rounds && !st.cancelled)
    return start_round(self);
  if (r.status == build_status::built && !st.options.post_build_hook.empty())
    return run_post_build_hook(self, std::move(r));
  done(self, std::move(r));
}

} // namespace

void give_back(goal_ptr self, bool reusable) {
  auto& st = self->state;
  if (!st.builder)
    return;
  if (st.workers) {
    self->demonitor(st.builder.address());
    self->send(st.workers, release_atom::value, st.round_id, reusable && !st.builder_spoiled);
  }
  st.builder = nullptr;
  st.applied = false;
  st.builder_spoiled = false;
}

void cancel_builder(goal_ptr self) {
  auto& st = self->state;
  if (st.front)
    self->send(st.front, cancel_atom::value, st.builder, st.round_id);
  else
    self->send(st.builder, cancel_atom::value, st.round_id);
}

// The worker running the round is gone (its builder went down, or no
// builder came): what it left is cleaned by the next build there or by its
// successor; nothing of it was registered. The round is tried again.
void worker_lost(goal_ptr self, const std::string& why) {
  auto& st = self->state;
  st.builder = nullptr;
  st.applied = false;
  st.builder_spoiled = false;
  if (st.describing)
    return; // leased ahead and lost before its round: another is leased once described
  if (st.reported) { // the round's result stands: only its release is lost
    if (st.releasing) {
      ++st.attempt; // the release's answer will not come
      round_released(self, "");
    }
    return;
  }
  ++st.attempt; // whatever the lost builder still answers is void
  if (st.cancelled)
    return done(self, cancelled_result(drv_path(self)));
  if (st.retries >= st.options.max_build_retries) {
    auto r = ended(build_status::misc_failure, "building '" + drv_path(self) + "': its worker was lost (" + why +
                                                   "), " + std::to_string(st.retries) + " times; not tried again");
    return done(self, std::move(r));
  }
  ++st.retries;
  say(self, "building '" + drv_path(self) + "' again: its worker was lost (" + why + "); try " +
                std::to_string(st.retries) + " of " + std::to_string(st.options.max_build_retries));
  run_round(self);
}

// The outputs are registered; the hook runs before the goal reports, so
// what depends on them waits for it, and its failure is the build's.
void run_post_build_hook(goal_ptr self, build_result r) {
  auto& st = self->state;
  const std::string& hook = st.options.post_build_hook;
  auto show_output = [=](const std::string& output) {
    self->send(self->state.scheduler, hook_atom::value, drv_path(self), hook, output);
  };
  self->send(st.scheduler, hook_atom::value, drv_path(self), hook);
  std::vector<std::string> outputs;
  for (auto& [name, path] : r.outputs)
    outputs.push_back(path);
  self->request(spawn_post_build_hook(self->system()), post_build_hook_timeout, hook_atom::value, hook,
                drv_path(self), outputs)
      .then(
          [=](const std::string& output) mutable {
            show_output(output);
            done(self, std::move(r));
          },
          [=](caf::error& e) {
            auto& ctx = e.context();
            if (ctx.size() == 2 && ctx.match_element<std::string>(1))
              show_output(ctx.get_as<std::string>(1));
            done(self, ended(build_status::misc_failure, error_text(e)));
          });
}

void start_round(goal_ptr self) {
  auto& st = self->state;
  ++st.round;
  // With the output locks held, the store looks again before it describes:
  // whoever held them may have built the outputs.
  std::set<std::string> recheck;
  if (st.round == 1 && st.options.mode == build_mode::normal)
    recheck = wanted_outputs(self);
  st.describing = true;
  if (st.workers && !st.builder && !st.leasing)
    lease_builder(self);
  self->request(st.store, store_step_timeout, describe_atom::value, this_round(self), recheck)
      .then(
          [=](build_request& q) {
            auto& state = self->state;
            state.describing = false;
            if (!recheck.empty()) {
              for (auto& [name, out] : state.loaded.drv.outputs)
                state.loaded.output_valid[name] =
                    !out.path.empty() &&
                    std::find(q.invalid_outputs.begin(), q.invalid_outputs.end(), out.path) == q.invalid_outputs.end();
              if (q.already_valid) {
                state.start_time = 0; // nothing was built
                return done(self, ended(build_status::already_valid));
              }
            }
            auto mode = state.options.mode;
            std::string what = (mode == build_mode::check    ? "checking outputs of '"
                                : mode == build_mode::repair ? "repairing outputs of '"
                                                             : "building '") +
                               drv_path(self) + "'";
            if (state.rounds > 1)
              what += " (round " + std::to_string(state.round) + "/" + std::to_string(state.rounds) + ")";
            self->send(state.scheduler, status_atom::value, drv_path(self), what);
            if (state.cancelled)
              return done(self, cancelled_result(drv_path(self)));
            state.current = std::move(q);
            run_round(self);
          },
          [=](caf::error& e) {
            self->state.describing = false;
            if (e != engine_errc::input_rejected)
              return done(self, ended(build_status::misc_failure, error_text(e)));
            auto r = ended(build_status::input_rejected, error_text(e));
            r.permanent = true;
            done(self, r);
          });
}

} // namespace kiln::goal
