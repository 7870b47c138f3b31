// The builder actor: the builder's side of build rounds, one at a time (a
// builder in kilnd's process serves one round and ends; one on a worker
// serves the rounds kilnd leases it, so a round costs the link no spawn,
// no new proxy and no thread). Each round has a number, carried by every
// message about it, so nothing of an earlier round reaches the next. Detached, as
// preparing (build directory, build user, pre-build hook) and scanning the
// outputs block; the process is started and watched on a thread of its own
// (fork, poll and waitpid block), which posts what happens here. The actor
// owns the limits: timeout and max-silent-time as delayed messages,
// max-log-size as a counter, build-size-max as a second thread measuring
// the disk, each killing the builder's whole process group.
#include "actors/actors.hpp"
#include "actors/build_host.hpp"
#include "actors/log_window.hpp"
#include "sandbox/builder_process.hpp"
#include "store/local/build_log.hpp"
#include "store/io/file_ops.hpp"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <thread>

namespace kiln {

namespace {

// Log bytes a build may have on their way to the logger (see log_window).
constexpr uint64_t log_window_bytes = 256 * 1024;

// What the builder holds while a round runs.
struct round_state {
  ~round_state() {
    window->close(); // the reading thread never waits on a dead actor
    *size_watch_done = true;
    // Ended while its builder runs (its goal or kilnd is gone): killed.
    if (pid > 0 && !exited)
      ::kill(-pid, SIGKILL);
    // Ended without being told (its goal died): nothing kept.
    if (prepared && host)
      try {
        host->release(request, *prepared, false);
      } catch (const std::exception&) {
      }
  }
  std::shared_ptr<std::atomic<bool>> size_watch_done = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<log_window> window = std::make_shared<log_window>(log_window_bytes);
  std::shared_ptr<build_host> host;
  build_request request;
  std::optional<prepared_build> prepared; // until released
  builder_job job;
  caf::typed_response_promise<build_report> promise;
  builder_outcome outcome;
  std::unique_ptr<log_tail> tail;
  pid_t pid = -1;
  bool exited = false;
  uint64_t log_bytes = 0;
  uint64_t silence_generation = 0; // which output the pending silence tick follows
  uint64_t id = 0;                 // the round's number
};

struct builder_state {
  bool reusable = false;             // serves another round after this one
  std::unique_ptr<round_state> round; // the one running, if any
  static inline const char* name = "builder";
};

// What the round's threads and timers post; each carries the round's number.
using builder_impl = builder_actor::extend<
    caf::reacts_to<started_atom, uint64_t, int32_t>, caf::reacts_to<output_atom, uint64_t, std::string>,
    caf::reacts_to<exited_atom, uint64_t, int32_t, std::string>,
    caf::reacts_to<limit_atom, uint64_t, uint8_t, uint64_t>,
    caf::reacts_to<usage_atom, uint64_t, uint64_t, uint64_t, uint64_t>>;

// What build-size-max counts: the build directory and the outputs.
uint64_t disk_used(const std::string& build_dir, const std::vector<std::string>& outputs) {
  uint64_t used = disk_usage(build_dir);
  for (auto& o : outputs)
    used += disk_usage(o);
  return used;
}

// Runs on its own thread: everything blocking about one builder process.
void watch_builder(builder_impl self, uint64_t id, sandbox::sandbox_spec spec, std::vector<std::string> outputs,
                   std::shared_ptr<log_window> window, uint64_t size_max) {
  try {
    auto p = sandbox::builder_process::start(spec);
    caf::anon_send(self, started_atom::value, id, static_cast<int32_t>(p.pid()));
    int status = p.watch([&](std::string_view out) {
      window->acquire(out.size());
      caf::anon_send(self, output_atom::value, id, std::string(out));
    });
    auto& u = p.usage();
    caf::anon_send(self, usage_atom::value, id, u.cpu_user_us, u.cpu_system_us, u.peak_memory);
    // A builder that failed at the limit between two measurements (a file
    // stopped by RLIMIT_FSIZE, under a shell that turned the signal into an
    // exit code) failed because of it.
    if (size_max && status != 0) {
      uint64_t used = disk_used(spec.build_dir, outputs);
      if (used >= size_max)
        caf::anon_send(self, limit_atom::value, id, uint8_t(builder_outcome::disk_size), used);
    }
    caf::anon_send(self, exited_atom::value, id, static_cast<int32_t>(status), std::string());
    // The store syncs the outputs before it registers them; their data is
    // sent on its way to the disk now, while the result travels there.
    if (status == 0)
      for (auto& o : outputs)
        start_writeback_tree(o);
  } catch (const std::exception& e) {
    caf::anon_send(self, exited_atom::value, id, int32_t(-1), std::string(e.what()));
  }
}

// Measures the disk a build's directory and outputs take (build-size-max)
// until `done`, on a thread of its own: measuring a big tree takes a while,
// so the pause between two measurements grows with it and watching costs
// a small share of the machine. (No file can outgrow the limit between
// two: the builder runs under RLIMIT_FSIZE.)
void watch_size(builder_impl self, uint64_t id, std::string build_dir, std::vector<std::string> outputs, uint64_t limit,
                std::shared_ptr<std::atomic<bool>> done) {
  using namespace std::chrono;
  auto pause = milliseconds(500);
  for (;;) {
    for (auto slept = milliseconds(0); slept < pause; slept += milliseconds(50)) {
      if (*done)
        return;
      std::this_thread::sleep_for(milliseconds(50));
    }
    auto start = steady_clock::now();
    uint64_t used = disk_used(build_dir, outputs);
    if (used > limit) {
      caf::anon_send(self, limit_atom::value, id, uint8_t(builder_outcome::disk_size), used);
      return;
    }
    pause = std::max(milliseconds(500), duration_cast<milliseconds>(steady_clock::now() - start) * 10);
  }
}

using builder_ptr = builder_impl::stateful_pointer<builder_state>;

// The running round if it is round `id`: messages of another are stale.
round_state* round_of(builder_ptr self, uint64_t id) {
  auto& r = self->state.round;
  return r && r->id == id ? r.get() : nullptr;
}

// The round is over (reported and released): the builder serves the next
// one, or ends.
void end_round(builder_ptr self) {
  self->state.round.reset();
  if (!self->state.reusable)
    self->quit();
}

// Kills the round's builder process group for a limit (or a cancel).
void kill_for(round_state& r, uint8_t why, std::string message) {
  if (r.exited || r.outcome.limit != builder_outcome::none)
    return;
  r.outcome.limit = why;
  r.outcome.message = std::move(message);
  if (r.pid > 0)
    ::kill(-r.pid, SIGKILL);
}

void arm_silence(builder_ptr self, round_state& r) {
  if (r.job.max_silent_time)
    self->delayed_send(self, std::chrono::seconds(r.job.max_silent_time), limit_atom::value, r.id,
                       uint8_t(builder_outcome::silent), ++r.silence_generation);
}

// Prepares the round and starts its builder process.
void start(builder_ptr self, logger_actor logger, round_state& r) {
  r.job = r.prepared->job;
  r.tail = std::make_unique<log_tail>(r.job.log_lines);
  if (!r.job.notice.empty())
    self->request(logger, log_write_timeout, log_atom::value, r.job.drv_path, r.job.notice + "\n")
        .then([](uint64_t) {}, [](caf::error&) {});
  if (r.job.timeout)
    self->delayed_send(self, std::chrono::seconds(r.job.timeout), limit_atom::value, r.id,
                       uint8_t(builder_outcome::timeout), uint64_t(0));
  arm_silence(self, r);
  std::thread(watch_builder, builder_impl(self), r.id, r.job.process, r.job.output_locations, r.window,
              r.job.size_max)
      .detach();
  if (r.job.size_max)
    std::thread(watch_size, builder_impl(self), r.id, r.job.process.build_dir, r.job.output_locations,
                r.job.size_max, r.size_watch_done)
        .detach();
}

// The builder process has ended: the outputs are inspected and the report
// goes to the goal. The goal closes the log once it has the report: every
// line sent from here went ahead of it.
void report(builder_ptr self, round_state& r, int32_t status, const std::string& setup_error) {
  r.exited = true;
  *r.size_watch_done = true;
  r.outcome.wait_status = status;
  if (!setup_error.empty()) {
    r.outcome.limit = builder_outcome::setup_failed;
    r.outcome.message = setup_error;
  }
  r.tail->finish();
  for (auto& l : r.tail->lines())
    r.outcome.log_tail.push_back(l);
  build_report report = r.host->report(r.request, *r.prepared, r.outcome);
  // Nothing to keep and the outputs in the store: released now, so the
  // goal need not ask (a round trip to a worker saved).
  if (!r.request.options.keep_failed && !report.isolated_outputs) {
    auto prepared = std::move(*r.prepared);
    r.prepared.reset();
    try {
      r.host->release(r.request, prepared, false);
    } catch (const std::exception& e) {
      if (report.failure.empty())
        report.failure = e.what();
    }
    report.released = true;
  }
  bool released = report.released;
  r.promise.deliver(std::move(report));
  if (released)
    end_round(self);
}

builder_impl::behavior_type builder_behavior(builder_ptr self, logger_actor logger, std::shared_ptr<build_host> host,
                                              bool reusable) {
  self->state.reusable = reusable;
  return {
      [=](run_atom, uint64_t id, build_request& request) -> caf::typed_response_promise<build_report> {
        auto promise = self->make_response_promise<build_report>();
        if (self->state.round) {
          promise.deliver(caf::make_error(engine_errc::builder_failure,
                                          std::string("the builder is busy with another round")));
          return promise;
        }
        self->state.round = std::make_unique<round_state>();
        auto& r = *self->state.round;
        r.id = id;
        r.host = host;
        r.request = std::move(request);
        r.promise = promise;
        try {
          r.prepared = host->prepare(r.request);
        } catch (const std::exception& e) {
          build_report failed;
          failed.failure = e.what();
          failed.released = true; // prepare left nothing behind
          r.promise.deliver(std::move(failed));
          end_round(self);
          return promise;
        }
        start(self, logger, r);
        return promise;
      },
      [=](started_atom, uint64_t id, int32_t pid) {
        if (auto r = round_of(self, id)) {
          r->pid = pid;
          // A limit that fired before the pid was known.
          if (r->outcome.limit != builder_outcome::none)
            ::kill(-pid, SIGKILL);
        }
      },
      [=](output_atom, uint64_t id, const std::string& bytes) {
        auto r = round_of(self, id);
        if (!r)
          return;
        auto window = r->window;
        uint64_t n = bytes.size();
        if (r->outcome.limit != builder_outcome::none) {
          window->release(n);
          return; // killed: what it still printed is not shown
        }
        r->log_bytes += n;
        if (r->job.max_log_size && r->log_bytes > r->job.max_log_size) {
          window->release(n);
          return kill_for(*r, builder_outcome::log_size, "log limit");
        }
        r->tail->feed(bytes);
        self->request(logger, log_write_timeout, log_atom::value, r->job.drv_path, bytes)
            .then([window, n](uint64_t) { window->release(n); }, [window, n](caf::error&) { window->release(n); });
        arm_silence(self, *r);
      },
      [=](limit_atom, uint64_t id, uint8_t kind, uint64_t value) {
        auto r = round_of(self, id);
        if (!r)
          return;
        if (kind == builder_outcome::disk_size)
          return kill_for(*r, kind, "its build directory and outputs took " + std::to_string(value) + " bytes on disk");
        if (kind == builder_outcome::silent && value != r->silence_generation)
          return; // output came since this tick was armed
        kill_for(*r, kind, kind == builder_outcome::silent ? "silent" : "timeout");
      },
      [=](exited_atom, uint64_t id, int32_t status, const std::string& setup_error) {
        if (auto r = round_of(self, id))
          report(self, *r, status, setup_error);
      },
      [=](release_atom, uint64_t id, bool keep) -> caf::result<std::string> {
        auto r = round_of(self, id);
        if (!r)
          return std::string();
        std::optional<prepared_build> prepared = std::move(r->prepared);
        r->prepared.reset();
        auto request = std::move(r->request);
        auto round_host = r->host;
        end_round(self);
        if (!prepared)
          return std::string();
        try {
          return round_host->release(request, *prepared, keep);
        } catch (const std::exception& e) {
          return caf::make_error(engine_errc::builder_failure, std::string(e.what()));
        }
      },
      [=](cancel_atom, uint64_t id) {
        if (auto r = round_of(self, id))
          kill_for(*r, builder_outcome::cancelled, "cancelled");
      },
      [=](usage_atom, uint64_t id, uint64_t user, uint64_t system, uint64_t peak) {
        if (auto r = round_of(self, id)) {
          r->outcome.cpu_user_us = user;
          r->outcome.cpu_system_us = system;
          r->outcome.peak_memory = peak;
        }
      },
  };
}

} // namespace

builder_actor spawn_builder(caf::actor_system& sys, logger_actor logger, std::shared_ptr<build_host> host,
                            bool reusable) {
  return caf::actor_cast<builder_actor>(
      sys.spawn<caf::detached>(builder_behavior, std::move(logger), std::move(host), reusable));
}

} // namespace kiln
