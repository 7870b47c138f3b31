// The embedded engine: an actor system in this process with the store
// actor, logger and scheduler, run until every requested goal is done.
#include "actors/actors.hpp"
#include "actors/build_host.hpp"
#include "actors/build_steps.hpp"
#include "actors/worker.hpp"

#include "caf/io/all.hpp"
#include "actors/shared_goals.hpp"
#include "actors/valid_targets.hpp"
#include "store/io/error.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <csignal>
#include <map>
#include <pthread.h>
#include <thread>

namespace kiln {

void set_scheduler(caf::actor_system_config& cfg) {
  // CAF's default is max(cores, 4) threads; builds and downloads block on
  // threads of their own, so the scheduler needs no more than the cores.
  cfg.set("scheduler.max-threads", std::max(2u, std::thread::hardware_concurrency()));
  // Work sharing wakes an idle worker through a condition variable;
  // CAF's default work stealing polls with short sleeps, which on two
  // cores took CPU from the builders (measured: 12% of a chain build).
  cfg.set("scheduler.policy", caf::atom("sharing"));
}

namespace {

struct engine_config : caf::actor_system_config {
  explicit engine_config(bool workers = false) {
    kiln::add_message_types(*this);
    if (workers) {
      load_worker_link(*this);
    }
    set_scheduler(*this);
  }
};

// Turns SIGINT and SIGTERM into a cancel of the run: they are blocked
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

  void watch(std::function<void()> cancel) {
    cancel_ = std::move(cancel);
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
        cancel_();
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
  std::function<void()> cancel_;
  sigset_t set_, old_;
  std::atomic<bool> stop_{false}, fired_{false};
  std::thread thread_;
};

} // namespace

namespace {

// Every goal's results in run.all; the top-level ones again in the order asked.
void order_top_level(engine_run& run, const std::vector<goal_request>& requests) {
  std::map<std::string, const build_result*> top_level;
  for (auto& r : run.all)
    if (r.top_level)
      top_level.emplace(r.path, &r);
  for (auto& req : requests)
    if (auto it = top_level.find(req.drv_path); it != top_level.end())
      run.top_level.push_back(*it->second);
}

class host_job : public engine_job {
public:
  host_job(caf::actor_system& sys, slot_pool_actor pool, worker_pool_actor workers, std::shared_ptr<shared_goals> shared,
           std::shared_ptr<local_store> store, const build_options& options, const std::vector<goal_request>& requests,
           event_sink events)
    : requests_(requests) {
    // Made first, even when nothing is built: a bad key file is an error at start.
    auto steps = std::make_shared<build_steps>(*store, options);
    auto host = std::make_shared<build_host>(options.build_dir_parent);
    settled_targets settled;
    if (options.mode == build_mode::normal)
      settled = settle_valid_targets(*store, requests);
    else
      settled.remaining = requests;
    run_.all = std::move(settled.already_valid);
    if (settled.remaining.empty()) {
      done_ = true;
      return;
    }
    std::function<void(const std::string&, const std::string&)> lines;
    if (options.print_build_logs && events)
      lines = [events, shared](const std::string& drv, const std::string& line) {
        events(log_line_event(drv, line));
        if (shared) // and for the runs that joined this goal
          shared->tell_watchers(drv, line);
      };
    substituters_ = spawn_substituter_pool(sys, *store, options, workers);
    storer_ = spawn_store_actor(sys, store, std::move(steps));
    logger_ = spawn_logger(sys, std::move(lines));
    sched_ = spawn_scheduler(sys, storer_, substituters_, logger_, std::move(host), std::move(workers), options, std::move(events), store->layout().store_dir(),
                             std::move(pool), std::move(shared));
    // The request waits on a thread of its own, not on a CAF scheduler thread.
    waiter_ = std::thread([this, &sys, remaining = std::move(settled.remaining)] {
      caf::scoped_actor self{sys};
      std::string failure;
      std::vector<build_result> all;
      self->request(sched_, build_wait_timeout, want_atom::value, remaining)
          .receive([&](std::vector<build_result>& r) { all = std::move(r); },
                   [&](caf::error& e) { failure = sys.render(e); });
      // Answered, the scheduler ends by itself once the goals another run
      // still wants are done (and its linked actors with it).
      if (!failure.empty())
        self->send_exit(sched_, caf::exit_reason::user_shutdown);
      std::lock_guard<std::mutex> g(mutex_);
      run_.all.insert(run_.all.end(), std::make_move_iterator(all.begin()), std::make_move_iterator(all.end()));
      failure_ = failure;
      done_ = true;
      ended_.notify_all();
    });
  }

  ~host_job() override {
    if (waiter_.joinable()) {
      cancel();
      waiter_.join();
    }
  }

  bool wait_for(std::chrono::milliseconds how_long) override {
    std::unique_lock<std::mutex> g(mutex_);
    return ended_.wait_for(g, how_long, [this] { return done_; });
  }

  void cancel() override {
    if (sched_)
      caf::anon_send(sched_, cancel_atom::value);
  }

  engine_run result() override {
    if (waiter_.joinable())
      waiter_.join();
    if (!failure_.empty())
      throw kiln::error("the build engine failed: " + failure_);
    engine_run run = run_;
    order_top_level(run, requests_);
    return run;
  }

private:
  std::vector<goal_request> requests_;
  store_actor storer_;
  substituter_actor substituters_;
  logger_actor logger_;
  scheduler_actor sched_;
  std::thread waiter_;
  std::mutex mutex_;
  std::condition_variable ended_;
  bool done_ = false;
  engine_run run_;
  std::string failure_;
};

} // namespace

struct engine_host::impl {
  explicit impl(bool with_workers) : cfg(with_workers) {}
  engine_config cfg;
  caf::actor_system sys{cfg};
  slot_pool_actor pool;
  worker_pool_actor workers;
  std::shared_ptr<shared_goals> shared = std::make_shared<shared_goals>();
};

engine_host::engine_host(uint32_t shared_slots, worker_options workers)
  : impl_(std::make_unique<impl>(workers.count > 0)) {
  if (shared_slots)
    impl_->pool = spawn_slot_pool(impl_->sys, shared_slots);
  if (workers.count)
    impl_->workers = spawn_worker_pool(impl_->sys, std::move(workers));
}
engine_host::~engine_host() {
  stop_workers();
  // The system waits for every actor before it goes.
  if (impl_->pool)
    caf::anon_send_exit(impl_->pool, caf::exit_reason::user_shutdown);
  if (impl_->workers)
    caf::anon_send_exit(impl_->workers, caf::exit_reason::user_shutdown);
}

std::unique_ptr<engine_job> engine_host::start(std::shared_ptr<local_store> store, const build_options& options,
                                               const std::vector<goal_request>& requests, event_sink events) {
  return std::make_unique<host_job>(impl_->sys, impl_->pool, impl_->workers, impl_->shared, std::move(store), options,
                                    requests, std::move(events));
}

uint32_t engine_host::stop_workers() {
  if (!impl_->workers)
    return 0;
  uint32_t killed = 0;
  caf::scoped_actor self{impl_->sys};
  self->request(impl_->workers, worker_stop_deadline + std::chrono::seconds(5), stop_atom::value)
      .receive([&](uint32_t n) { killed = n; },
               [](caf::error&) {}); // stopped already, or the pool is gone: nothing left to wait for
  return killed;
}

caf::actor_system& engine_host::system() { return impl_->sys; }

engine_event log_line_event(const std::string& drv, const std::string& line) {
  engine_event e;
  e.kind = engine_event::log_line;
  e.drv_path = drv;
  e.text = line;
  return e;
}

engine_run run_builds(std::shared_ptr<local_store> store, const build_options& options,
                      const std::vector<goal_request>& requests, const event_sink& events) {
  // The interrupt watch first: the actor system's threads inherit its mask.
  interrupt_watch interrupts;
  engine_host host;
  auto job = host.start(std::move(store), options, requests, events);
  interrupts.watch([&job] { job->cancel(); });
  job->wait_for(std::chrono::milliseconds(0));
  struct stop_watch {
    interrupt_watch& w;
    ~stop_watch() { w.stop(); }
  } stop{interrupts};
  engine_run run = job->result();
  run.interrupted = interrupts.fired();
  return run;
}

} // namespace kiln
