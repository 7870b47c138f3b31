// The embedded engine: an actor system in this process with the store
// actor, logger and scheduler, run until every requested goal is done.
#include "actors/actors.hpp"
#include "actors/build_steps.hpp"
#include "actors/valid_targets.hpp"
#include "store/io/error.hpp"

#include <atomic>
#include <csignal>
#include <map>
#include <pthread.h>
#include <thread>

namespace kiln {

namespace {

struct engine_config : caf::actor_system_config {
  engine_config() {
    kiln::add_message_types(*this);
    // CAF's default is max(cores, 4) threads; builds block on their own
    // threads, so the scheduler needs no more than the cores.
    set("scheduler.max-threads", std::max(2u, std::thread::hardware_concurrency()));
    // Work sharing wakes an idle worker through a condition variable;
    // CAF's default work stealing polls with short sleeps, which on two
    // cores took CPU from the builders (measured: 12% of a chain build).
    set("scheduler.policy", caf::atom("sharing"));
  }
};

// Turns SIGINT and SIGTERM into a cancel of the scheduler: they are blocked
// in every thread (made before the actor system, whose threads inherit the
// mask; builders unblock them before exec) and taken by a thread of its
// own. A second signal ends the process as it would have.
class interrupt_watch {
public:
  interrupt_watch() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }

  void watch(caf::actor scheduler) {
    scheduler_ = std::move(scheduler);
    thread_ = std::thread([this] {
      const timespec tick{0, 100 * 1000 * 1000};
      while (!stop_) {
        int sig = ::sigtimedwait(&set_, nullptr, &tick);
        if (sig < 0)
          continue;
        if (fired_.exchange(true)) {
          std::signal(sig, SIG_DFL);
          pthread_sigmask(SIG_UNBLOCK, &set_, nullptr);
          ::raise(sig);
        }
        caf::anon_send(scheduler_, cancel_atom::value);
      }
    });
  }
  // Before the actor system goes: nothing is sent to it after this.
  void stop() {
    stop_ = true;
    if (thread_.joinable())
      thread_.join();
  }

  ~interrupt_watch() {
    stop();
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  bool fired() const { return fired_; }

private:
  caf::actor scheduler_;
  sigset_t set_, old_;
  std::atomic<bool> stop_{false}, fired_{false};
  std::thread thread_;
};

} // namespace

engine_run run_builds(std::shared_ptr<local_store> store, const build_options& options,
                      const std::vector<goal_request>& requests, const event_sink& events) {
  engine_run run;
  // Made first, even when nothing is built: a bad key file is an error at start.
  auto steps = std::make_shared<build_steps>(*store, options);
  settled_targets settled;
  if (options.mode == build_mode::normal)
    settled = settle_valid_targets(*store, requests);
  else
    settled.remaining = requests;
  run.all = std::move(settled.already_valid);
  if (!settled.remaining.empty()) {
    interrupt_watch interrupts;
    engine_config cfg;
    caf::actor_system sys{cfg};
    auto storer = spawn_store_actor(sys, store, std::move(steps));
    auto logger = spawn_logger(sys, options.print_build_logs);
    auto sched = spawn_scheduler(sys, storer, logger, options, events, store->layout().store_dir());
    interrupts.watch(caf::actor_cast<caf::actor>(sched));
    caf::scoped_actor self{sys};
    std::string failure;
    self->request(sched, caf::infinite, want_atom::value, settled.remaining)
        .receive(
            [&](std::vector<build_result>& all) {
              run.all.insert(run.all.end(), std::make_move_iterator(all.begin()),
                             std::make_move_iterator(all.end()));
            },
            [&](caf::error& e) { failure = sys.render(e); });
    self->send_exit(sched, caf::exit_reason::user_shutdown);
    self->send_exit(logger, caf::exit_reason::user_shutdown);
    self->send_exit(storer, caf::exit_reason::user_shutdown);
    interrupts.stop();
    run.interrupted = interrupts.fired();
    if (!failure.empty())
      throw kiln::error("the build engine failed: " + failure);
  }
  std::map<std::string, const build_result*> top_level;
  for (auto& r : run.all)
    if (r.top_level)
      top_level.emplace(r.path, &r);
  for (auto& req : requests)
    if (auto it = top_level.find(req.drv_path); it != top_level.end())
      run.top_level.push_back(*it->second);
  return run;
}

} // namespace kiln
