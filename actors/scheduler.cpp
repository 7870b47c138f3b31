// The scheduler: the goal table and the build slots.
// - One goal per derivation and per store path. A second request joins the
//   running goal (its wanted outputs merged in) or gets the finished
//   goal's result; only an AlreadyValid that did not cover newly wanted
//   outputs starts the goal again.
// - `max-jobs` build slots, leased to goals and queued in request order;
//   a lease comes back when its goal releases it or dies (monitor).
// - Without --keep-going the first failure cancels every other goal.
// - Cancelling spares a build that another run of the same engine_host
//   has a goal for (shared_interest.hpp): it finishes for that run's sake.
#include "actors/actors.hpp"
#include "actors/shared_interest.hpp"

#include <deque>
#include <memory>
#include <map>

namespace kiln {

namespace {

using result_callback = std::function<void(const build_result&)>;

struct goal_entry {
  caf::actor goal; // null once finished
  std::set<std::string> outputs; // wanted; empty = all
  std::vector<result_callback> waiters;
  std::optional<build_result> result;
  bool top_level = false;
  bool is_path = false;
};

struct queued_slot {
  caf::typed_response_promise<uint64_t> promise;
  caf::actor_addr holder;
};

struct scheduler_state {
  store_actor store;
  substituter_actor substituters;
  logger_actor logger;
  build_options options;
  event_sink events;
  std::string store_real_dir;
  std::map<std::string, goal_entry> drv_goals, path_goals;
  // Derivations read ahead by goals, for the goals of their inputs.
  std::map<std::string, loaded_derivation> preloaded;
  // A running goal's key and table (true: path_goals).
  std::map<caf::actor_addr, std::pair<std::string, bool>> by_actor;
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
  // kilnd: the derivations every run has goals for, and which of them
  // this run counts there (given back when their goals end, or with it).
  std::shared_ptr<shared_interest> interest;
  std::multiset<std::string> counted;
  ~scheduler_state() {
    if (interest)
      for (auto& drv : counted)
        interest->remove(drv);
  }
  static inline const char* name = "scheduler";
};

using sched_ptr = scheduler_actor::stateful_pointer<scheduler_state>;

void emit(sched_ptr self, engine_event::kind_t kind, const std::string& drv, const std::string& text,
          build_status status = build_status::misc_failure) {
  auto& st = self->state;
  if (!st.events)
    return;
  engine_event e;
  e.kind = kind;
  e.drv_path = drv;
  e.text = text;
  e.result = status;
  e.built = st.built;
  e.failed = st.failed;
  e.running = st.leases.size();
  e.queued = st.slot_queue.size();
  st.events(e);
}

void start_goal(sched_ptr self, const std::string& key, goal_entry& e) {
  auto& st = self->state;
  auto me = caf::actor_cast<scheduler_actor>(self);
  if (e.is_path)
    e.goal = spawn_substitution_goal(self, me, st.store, st.substituters, key,
                                     static_cast<uint32_t>(st.options.substituters.size()));
  else {
    std::optional<loaded_derivation> loaded;
    if (auto it = st.preloaded.find(key); it != st.preloaded.end()) {
      loaded = std::move(it->second);
      st.preloaded.erase(it);
    }
    // Only what was asked for is checked or hashed; inputs are realised
    // normally (as Nix's), except that repair reaches them too.
    build_options options = st.options;
    if (!e.top_level && options.mode != build_mode::repair)
      options.mode = build_mode::normal;
    e.goal = spawn_derivation_goal(self, me, st.store, st.substituters, st.logger, std::move(options), goal_request{key, e.outputs},
                                   st.store_real_dir, std::move(loaded));
  }
  self->monitor(e.goal);
  st.by_actor[e.goal.address()] = {key, e.is_path};
  if (st.interest && !e.is_path) {
    st.interest->add(key);
    st.counted.insert(key);
  }
  if (st.cancelling)
    caf::anon_send(e.goal, cancel_atom::value);
}

void want(sched_ptr self, const goal_request& req, bool is_path, bool top_level, result_callback cb) {
  auto& st = self->state;
  auto& table = is_path ? st.path_goals : st.drv_goals;
  auto [it, fresh] = table.try_emplace(req.drv_path);
  goal_entry& e = it->second;
  e.is_path = is_path;
  e.top_level |= top_level;
  if (fresh) {
    e.outputs = req.outputs;
    e.waiters.push_back(std::move(cb));
    return start_goal(self, req.drv_path, e);
  }
  if (e.result) {
    bool reusable = e.result->status != build_status::already_valid || covers_outputs(e.outputs, req.outputs);
    if (reusable) {
      build_result r = *e.result;
      r.top_level = top_level;
      return cb(r);
    }
    // AlreadyValid for fewer outputs than now wanted: run the goal again.
    e.result.reset();
    merge_outputs(e.outputs, req.outputs);
    e.waiters.push_back(std::move(cb));
    return start_goal(self, req.drv_path, e);
  }
  if (!covers_outputs(e.outputs, req.outputs)) {
    merge_outputs(e.outputs, req.outputs);
    caf::anon_send(e.goal, add_outputs_atom::value, req.outputs);
  }
  e.waiters.push_back(std::move(cb));
}

void release_lease(sched_ptr self, uint64_t lease) {
  auto& st = self->state;
  st.leases.erase(lease);
  if (auto it = st.pool_leases.find(lease); it != st.pool_leases.end()) {
    self->send(st.pool, release_atom::value, it->second);
    st.pool_leases.erase(it);
  }
}

void grant_slots(sched_ptr self) {
  auto& st = self->state;
  while (!st.slot_queue.empty() && st.leases.size() + st.asking_pool < st.options.max_jobs) {
    auto q = std::move(st.slot_queue.front());
    st.slot_queue.pop_front();
    if (!st.pool) {
      uint64_t lease = st.next_lease++;
      st.leases[lease] = q.holder;
      q.promise.deliver(lease);
      continue;
    }
    // The daemon's slot first; the pool answers when this run's turn comes.
    ++st.asking_pool;
    self->request(st.pool, caf::infinite, slot_atom::value)
        .then(
            [=](uint64_t pool_lease) mutable {
              auto& s = self->state;
              --s.asking_pool;
              uint64_t lease = s.next_lease++;
              s.leases[lease] = q.holder;
              s.pool_leases[lease] = pool_lease;
              if (!s.by_actor.count(q.holder)) // the goal went meanwhile
                release_lease(self, lease);
              else
                q.promise.deliver(lease);
              grant_slots(self);
            },
            [=](caf::error& e) mutable {
              --self->state.asking_pool;
              q.promise.deliver(std::move(e));
            });
  }
}

// A goal whose build is running (it holds a slot) and that another run
// has a goal for: left to finish.
bool spared(sched_ptr self, const std::string& key, const goal_entry& e) {
  auto& st = self->state;
  if (!st.interest || e.is_path || !st.interest->wanted_elsewhere(key))
    return false;
  for (auto& [lease, holder] : st.leases)
    if (holder == e.goal.address())
      return true;
  return false;
}

void cancel_all(sched_ptr self) {
  auto& st = self->state;
  if (st.cancelling)
    return;
  st.cancelling = true;
  for (auto& table : {&st.drv_goals, &st.path_goals})
    for (auto& [key, e] : *table)
      if (e.goal && !spared(self, key, e))
        caf::anon_send(e.goal, cancel_atom::value);
  for (auto& q : st.slot_queue)
    q.promise.deliver(caf::make_error(engine_errc::cancelled, std::string("cancelled: another build failed")));
  st.slot_queue.clear();
}

// Records the result of the goal `who`; nothing if it is not running.
void goal_done(sched_ptr self, const caf::actor_addr& who, build_result r) {
  auto& st = self->state;
  auto running = st.by_actor.find(who);
  if (running == st.by_actor.end())
    return;
  auto [key, is_path] = running->second;
  st.by_actor.erase(running);
  if (auto c = st.counted.find(key); !is_path && c != st.counted.end()) {
    st.interest->remove(key);
    st.counted.erase(c);
  }
  goal_entry& e = (is_path ? st.path_goals : st.drv_goals).at(key);
  e.goal = nullptr;
  r.top_level = e.top_level;
  e.result = r;
  st.results.push_back(r);
  if (r.status == build_status::built)
    ++st.built;
  if (!is_success(r.status))
    ++st.failed;
  emit(self, engine_event::finished, key, r.error, r.status);
  auto waiters = std::move(e.waiters);
  e.waiters.clear();
  for (auto& w : waiters)
    w(r);
  if (!is_success(r.status) && !st.options.keep_going && r.status != build_status::dependency_failed)
    cancel_all(self);
}

scheduler_actor::behavior_type scheduler(sched_ptr self, store_actor store, substituter_actor substituters,
                                         logger_actor logger,
                                         build_options options, event_sink events, std::string store_real_dir,
                                         slot_pool_actor pool, std::shared_ptr<shared_interest> interest) {
  auto& initial = self->state;
  initial.pool = std::move(pool);
  initial.interest = std::move(interest);
  initial.store = std::move(store);
  initial.substituters = std::move(substituters);
  initial.logger = std::move(logger);
  initial.options = std::move(options);
  initial.events = std::move(events);
  initial.store_real_dir = std::move(store_real_dir);
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    // Leases of a goal that is gone come back.
    std::vector<uint64_t> gone;
    for (auto& [lease, holder] : st.leases)
      if (holder == dm.source)
        gone.push_back(lease);
    for (auto lease : gone)
      release_lease(self, lease);
    grant_slots(self);
    auto g = st.by_actor.find(dm.source);
    if (g == st.by_actor.end())
      return; // finished normally
    build_result r;
    r.path = g->second.first;
    r.status = build_status::misc_failure;
    r.error = "the goal for '" + r.path + "' died: " + caf::to_string(dm.reason);
    goal_done(self, dm.source, r);
  });
  return {
      [=](want_atom, const goal_request& req, bool top_level) -> caf::typed_response_promise<build_result> {
        auto rp = self->make_response_promise<build_result>();
        want(self, req, false, top_level, [rp](const build_result& r) mutable { rp.deliver(r); });
        return rp;
      },
      [=](want_atom, const std::vector<goal_request>& reqs) -> caf::typed_response_promise<std::vector<build_result>> {
        auto rp = self->make_response_promise<std::vector<build_result>>();
        auto left = std::make_shared<std::size_t>(reqs.size());
        auto finish = [self, rp]() mutable { rp.deliver(self->state.results); };
        if (reqs.empty())
          finish();
        for (auto& req : reqs)
          want(self, req, false, true, [left, finish](const build_result&) mutable {
            if (--*left == 0)
              finish();
          });
        return rp;
      },
      [=](want_path_atom, const std::string& path) -> caf::typed_response_promise<build_result> {
        auto rp = self->make_response_promise<build_result>();
        want(self, goal_request{path, {}}, true, false, [rp](const build_result& r) mutable { rp.deliver(r); });
        return rp;
      },
      [=](slot_atom) -> caf::typed_response_promise<uint64_t> {
        // Who asks, read before the promise takes the request over (after
        // make_response_promise, CAF 0.17's current_sender() is null).
        auto sender = self->current_sender();
        caf::actor_addr holder = sender ? sender->address() : caf::actor_addr();
        auto rp = self->make_response_promise<uint64_t>();
        auto& st = self->state;
        if (st.options.max_jobs == 0) {
          rp.deliver(caf::make_error(engine_errc::no_build_slots,
                                     std::string("unable to start any build; either increase '--max-jobs' or "
                                                 "enable remote builds")));
        } else if (st.cancelling) {
          rp.deliver(caf::make_error(engine_errc::cancelled, std::string("cancelled: another build failed")));
        } else {
          st.slot_queue.push_back({rp, holder});
          grant_slots(self);
        }
        return rp;
      },
      [=](release_atom, uint64_t lease) {
        release_lease(self, lease);
        grant_slots(self);
      },
      [=](done_atom, build_result& r) {
        if (auto sender = self->current_sender())
          goal_done(self, sender->address(), std::move(r));
      },
      [=](notice_atom, const std::string& drv, const std::string& line) {
        emit(self, engine_event::notice, drv, line);
      },
      [=](status_atom, const std::string& drv, const std::string& what) {
        emit(self, engine_event::building, drv, what);
      },
      [=](cancel_atom) { cancel_all(self); },
      [=](preload_atom, std::vector<loaded_derivation>& all) {
        auto& st = self->state;
        for (auto& l : all)
          if (!st.drv_goals.count(l.drv_path)) // a goal that ran has loaded its own
            st.preloaded.emplace(l.drv_path, std::move(l));
      },
  };
}

} // namespace

scheduler_actor spawn_scheduler(caf::actor_system& sys, store_actor store, substituter_actor substituters,
                                logger_actor logger,
                                build_options options, event_sink events, std::string store_real_dir,
                                slot_pool_actor pool, std::shared_ptr<shared_interest> interest) {
  return sys.spawn(scheduler, std::move(store), std::move(substituters), std::move(logger), std::move(options), std::move(events),
                   std::move(store_real_dir), std::move(pool), std::move(interest));
}

} // namespace kiln
