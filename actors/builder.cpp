// The builder actor: the builder's side of one build round. Detached, as
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
// The logger writes to a local file; an answer later than this means it is
// stuck, and the bytes are given back so the build is not stuck with it.
constexpr auto log_write_timeout = std::chrono::minutes(5);

struct builder_state {
  ~builder_state() {
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
  std::optional<build_report> report;     // made while the log closes
  builder_job job;
  caf::typed_response_promise<build_report> promise;
  builder_outcome outcome;
  std::unique_ptr<log_tail> tail;
  pid_t pid = -1;
  bool exited = false;
  uint64_t log_bytes = 0;
  uint64_t silence_generation = 0; // which output the pending silence tick follows
  static inline const char* name = "builder";
};

using builder_impl = builder_actor::extend<
    caf::reacts_to<started_atom, int32_t>, caf::reacts_to<output_atom, std::string>,
    caf::reacts_to<exited_atom, int32_t, std::string>, caf::reacts_to<limit_atom, uint8_t, uint64_t>,
    caf::reacts_to<usage_atom, uint64_t, uint64_t, uint64_t>>;

// What build-size-max counts: the build directory and the outputs.
uint64_t disk_used(const std::string& build_dir, const std::vector<std::string>& outputs) {
  uint64_t used = disk_usage(build_dir);
  for (auto& o : outputs)
    used += disk_usage(o);
  return used;
}

// Runs on its own thread: everything blocking about one builder process.
void watch_builder(builder_impl self, sandbox::sandbox_spec spec, std::vector<std::string> outputs,
                   std::shared_ptr<log_window> window, uint64_t size_max) {
  try {
    auto p = sandbox::builder_process::start(spec);
    caf::anon_send(self, started_atom::value, static_cast<int32_t>(p.pid()));
    int status = p.watch([&](std::string_view out) {
      window->acquire(out.size());
      caf::anon_send(self, output_atom::value, std::string(out));
    });
    auto& u = p.usage();
    caf::anon_send(self, usage_atom::value, u.cpu_user_us, u.cpu_system_us, u.peak_memory);
    // A builder that failed at the limit between two measurements (a file
    // stopped by RLIMIT_FSIZE, under a shell that turned the signal into an
    // exit code) failed because of it.
    if (size_max && status != 0) {
      uint64_t used = disk_used(spec.build_dir, outputs);
      if (used >= size_max)
        caf::anon_send(self, limit_atom::value, uint8_t(builder_outcome::disk_size), used);
    }
    caf::anon_send(self, exited_atom::value, static_cast<int32_t>(status), std::string());
    // The store syncs the outputs before it registers them; their data is
    // sent on its way to the disk now, while the result travels there.
    if (status == 0)
      for (auto& o : outputs)
        start_writeback_tree(o);
  } catch (const std::exception& e) {
    caf::anon_send(self, exited_atom::value, int32_t(-1), std::string(e.what()));
  }
}

// Measures the disk a build's directory and outputs take (build-size-max)
// until `done`, on a thread of its own: measuring a big tree takes a while,
// so the pause between two measurements grows with it and watching costs
// a small share of the machine. (No file can outgrow the limit between
// two: the builder runs under RLIMIT_FSIZE.)
void watch_size(builder_impl self, std::string build_dir, std::vector<std::string> outputs, uint64_t limit,
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
      caf::anon_send(self, limit_atom::value, uint8_t(builder_outcome::disk_size), used);
      return;
    }
    pause = std::max(milliseconds(500), duration_cast<milliseconds>(steady_clock::now() - start) * 10);
  }
}

builder_impl::behavior_type builder_behavior(builder_impl::stateful_pointer<builder_state> self, logger_actor logger,
                                              std::shared_ptr<build_host> host) {
  self->state.host = std::move(host);
  auto kill = [self](uint8_t why, std::string message) {
    auto& st = self->state;
    if (st.exited || st.outcome.limit != builder_outcome::none)
      return;
    st.outcome.limit = why;
    st.outcome.message = std::move(message);
    if (st.pid > 0)
      ::kill(-st.pid, SIGKILL);
  };
  auto arm_silence = [self] {
    auto& st = self->state;
    if (st.job.max_silent_time)
      self->delayed_send(self, std::chrono::seconds(st.job.max_silent_time), limit_atom::value,
                         uint8_t(builder_outcome::silent), ++st.silence_generation);
  };
  return {
      [=](run_atom, build_request& request) -> caf::typed_response_promise<build_report> {
        auto& st = self->state;
        st.request = std::move(request);
        st.promise = self->make_response_promise<build_report>();
        try {
          st.prepared = st.host->prepare(st.request);
        } catch (const std::exception& e) {
          build_report failed;
          failed.failure = e.what();
          failed.released = true; // prepare left nothing behind
          st.promise.deliver(std::move(failed));
          self->quit();
          return st.promise;
        }
        st.job = st.prepared->job;
        st.tail = std::make_unique<log_tail>(st.job.log_lines);
        self->send(logger, log_open_atom::value, st.job.drv_path, st.job.log_path, st.job.log_compression);
        if (!st.job.notice.empty())
          self->request(logger, log_write_timeout, log_atom::value, st.job.drv_path, st.job.notice + "\n")
              .then([](uint64_t) {}, [](caf::error&) {});
        if (st.job.timeout)
          self->delayed_send(self, std::chrono::seconds(st.job.timeout), limit_atom::value,
                             uint8_t(builder_outcome::timeout), uint64_t(0));
        arm_silence();
        std::thread(watch_builder, builder_impl(self), st.job.process, st.job.output_locations, st.window,
                    st.job.size_max).detach();
        if (st.job.size_max)
          std::thread(watch_size, builder_impl(self), st.job.process.build_dir, st.job.output_locations,
                      st.job.size_max, st.size_watch_done)
              .detach();
        return st.promise;
      },
      [=](started_atom, int32_t pid) {
        self->state.pid = pid;
        // A limit that fired before the pid was known.
        if (self->state.outcome.limit != builder_outcome::none)
          ::kill(-pid, SIGKILL);
      },
      [=](output_atom, const std::string& bytes) {
        auto& st = self->state;
        auto window = st.window;
        uint64_t n = bytes.size();
        if (st.outcome.limit != builder_outcome::none) {
          window->release(n);
          return; // killed: what it still printed is not shown
        }
        st.log_bytes += n;
        if (st.job.max_log_size && st.log_bytes > st.job.max_log_size) {
          window->release(n);
          kill(builder_outcome::log_size, "log limit");
          return;
        }
        st.tail->feed(bytes);
        self->request(logger, log_write_timeout, log_atom::value, st.job.drv_path, bytes)
            .then([window, n](uint64_t) { window->release(n); }, [window, n](caf::error&) { window->release(n); });
        arm_silence();
      },
      [=](limit_atom, uint8_t kind, uint64_t value) {
        if (kind == builder_outcome::disk_size)
          return kill(kind, "its build directory and outputs took " + std::to_string(value) + " bytes on disk");
        if (kind == builder_outcome::silent && value != self->state.silence_generation)
          return; // output came since this tick was armed
        kill(kind, kind == builder_outcome::silent ? "silent" : "timeout");
      },
      [=](exited_atom, int32_t status, const std::string& setup_error) {
        auto& st = self->state;
        st.exited = true;
        *st.size_watch_done = true;
        st.outcome.wait_status = status;

        if (!setup_error.empty()) {
          st.outcome.limit = builder_outcome::setup_failed;
          st.outcome.message = setup_error;
        }
        st.tail->finish();
        for (auto& l : st.tail->lines())
          st.outcome.log_tail.push_back(l);
        // The report goes once the logger has shown every line before it
        // (its messages from here arrive in order): a client must not hear
        // that the build ended before its last log lines. The outputs are
        // inspected meanwhile (from a worker, the close is a round trip to
        // kilnd: it costs nothing when it overlaps the hashing).
        auto finish = [self] {
          auto& st = self->state;
          bool released = st.report->released;
          st.promise.deliver(std::move(*st.report));
          if (released)
            self->quit();
        };
        self->request(logger, log_write_timeout, log_close_atom::value, st.job.drv_path)
            .then([finish](bool) { finish(); }, [finish](caf::error&) { finish(); });
        build_report report = st.host->report(st.request, *st.prepared, st.outcome);
        // Nothing to keep and the outputs in the store: released now, so
        // the goal need not ask (a round trip to a worker saved).
        if (!st.request.options.keep_failed && !report.isolated_outputs) {
          auto prepared = std::move(*st.prepared);
          st.prepared.reset();
          try {
            st.host->release(st.request, prepared, false);
          } catch (const std::exception& e) {
            if (report.failure.empty())
              report.failure = e.what();
          }
          report.released = true;
        }
        st.report = std::move(report);
      },
      [=](release_atom, bool keep) -> caf::result<std::string> {
        auto& st = self->state;
        self->quit();
        if (!st.prepared)
          return std::string();
        auto prepared = std::move(*st.prepared);
        st.prepared.reset();
        try {
          return st.host->release(st.request, prepared, keep);
        } catch (const std::exception& e) {
          return caf::make_error(engine_errc::builder_failure, std::string(e.what()));
        }
      },
      [=](cancel_atom) { kill(builder_outcome::cancelled, "cancelled"); },
      [=](usage_atom, uint64_t user, uint64_t system, uint64_t peak) {
        auto& o = self->state.outcome;
        o.cpu_user_us = user;
        o.cpu_system_us = system;
        o.peak_memory = peak;
      },
  };
}

} // namespace

builder_actor spawn_builder(caf::actor_system& sys, logger_actor logger, std::shared_ptr<build_host> host) {
  return caf::actor_cast<builder_actor>(sys.spawn<caf::detached>(builder_behavior, std::move(logger), std::move(host)));
}

} // namespace kiln
