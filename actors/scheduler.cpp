// The scheduler of one run: its goal table and build slots.
// - One goal per derivation and per store path. A second request joins the
//   running goal (its wanted outputs merged in) or gets the finished
//   goal's result; only an AlreadyValid that did not cover newly wanted
//   outputs starts the goal again.
// - Across runs (kilnd's clients; scheduler_runs.cpp): a derivation another
//   run has a goal for, under the same build options, is joined there
//   (asked of that run's scheduler) instead of getting a goal here; if
//   that run gives it up, this run starts its own.
// - `max-jobs` build slots, leased to goals and queued in request order;
//   a lease comes back when its goal releases it or dies (monitor).
// - Cancelling (SIGINT, a client gone, or a failure without --keep-going)
//   stops every goal no other run wants; the ones another run wants, and
//   their inputs, go on (checked again every quarter second, so they stop
//   once nobody wants them). The scheduler ends (and with it the run's
//   store actor, logger and substituters, linked to it) once the run has
//   its answer and no goal of it is left running.
#include "actors/scheduler_state.hpp"

namespace kiln {

namespace scheduling {

void emit(sched_ptr self, engine_event::kind_t kind, const std::string& drv, const std::string& text,
          build_status status) {
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

void start_goal(sched_ptr self, const std::string& key, goal_entry& e, bool may_join) {
  auto& st = self->state;
  bool doomed = st.cancelling && !st.kept.count({key, e.is_path});
  if (e.is_path)
    e.goal = spawn_substitution_goal(self, st.me, st.store, st.substituters, key);
  else {
    // Only what was asked for is checked or hashed; inputs are realised
    // normally (as Nix's), except that repair reaches them too.
    build_options options = st.options;
    if (!e.top_level && options.mode != build_mode::repair)
      options.mode = build_mode::normal;
    std::string profile = st.shared && !doomed ? profile_of(options) : std::string();
    if (!profile.empty() && may_join && !st.cancelling) {
      if (auto owner = st.shared->join(profile, key, st.me)) {
        st.counted.insert(key); // join() counted it
        e.owner = *owner;
        return join_goal(self, key, e);
      }
    }
    std::optional<loaded_derivation> loaded;
    if (auto it = st.preloaded.find(key); it != st.preloaded.end()) {
      loaded = std::move(it->second);
      st.preloaded.erase(it);
    }
    e.goal = spawn_derivation_goal(self, st.me, st.store, st.substituters, st.logger, st.host, st.workers, std::move(options),
                                   goal_request{key, e.outputs}, st.store_real_dir, std::move(loaded));
    if (!profile.empty()) {
      st.shared->offer(profile, key, st.me);
      e.profile = std::move(profile);
    }
    count_interest(st, key);
  }
  e.cancel_sent = false;
  self->monitor(e.goal);
  st.by_actor[e.goal.address()] = {key, e.is_path};
  if (doomed) {
    e.cancel_sent = true;
    caf::anon_send(e.goal, cancel_atom::value);
  }
}

void finish_entry(sched_ptr self, const goal_key& key, build_result r) {
  auto& st = self->state;
  goal_entry& e = (key.second ? st.path_goals : st.drv_goals).at(key.first);
  e.goal = nullptr;
  withdraw_offer(st, key.first, e);
  r.top_level = e.top_level;
  e.result = r;
  st.results.push_back(r);
  if (r.status == build_status::built)
    ++st.built;
  if (!is_success(r.status))
    ++st.failed;
  emit(self, engine_event::finished, key.first, r.error, r.status);
  auto waiters = std::move(e.waiters);
  e.waiters.clear();
  for (auto& w : waiters)
    w(r);
  if (!is_success(r.status) && !st.options.keep_going && r.status != build_status::dependency_failed &&
      !st.cancelling)
    cancel_all(self);
}

} // namespace scheduling

namespace {

using namespace scheduling;

void want(sched_ptr self, const goal_request& req, bool is_path, bool top_level, result_callback cb,
          std::optional<goal_key> parent = std::nullopt) {
  auto& st = self->state;
  goal_key key{req.drv_path, is_path};
  if (parent) {
    st.children[*parent].insert(key);
    if (st.cancelling && st.kept.count(*parent))
      st.kept.insert(key);
  }
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
  e.waiters.push_back(std::move(cb));
  if (covers_outputs(e.outputs, req.outputs))
    return;
  merge_outputs(e.outputs, req.outputs);
  if (e.goal)
    return caf::anon_send(e.goal, add_outputs_atom::value, req.outputs);
  count_interest(st, req.drv_path);
  join_goal(self, req.drv_path, e);
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
    self->request(st.pool, build_wait_timeout, slot_atom::value)
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

// The goal that sends the current request, if it is one of this run's
// (read before a response promise takes the request over).
std::optional<goal_key> asking_goal(sched_ptr self) {
  auto sender = self->current_sender();
  if (!sender)
    return std::nullopt;
  auto it = self->state.by_actor.find(sender->address());
  if (it == self->state.by_actor.end())
    return std::nullopt;
  return it->second;
}

// Once the run has its answer and nothing of it runs, it is over.
void end_if_idle(sched_ptr self) {
  if (self->state.answered && self->state.by_actor.empty())
    self->quit(caf::exit_reason::user_shutdown);
}

// Records the result of the goal `who`; nothing if it is not running.
void goal_done(sched_ptr self, const caf::actor_addr& who, build_result r) {
  auto& st = self->state;
  auto running = st.by_actor.find(who);
  if (running == st.by_actor.end())
    return;
  goal_key key = running->second;
  st.by_actor.erase(running);
  if (!key.second)
    uncount_interest(st, key.first);
  finish_entry(self, key, std::move(r));
  end_if_idle(self);
}

scheduler_actor::behavior_type scheduler(sched_ptr self, store_actor store, substituter_actor substituters,
                                         logger_actor logger, std::shared_ptr<build_host> host,
                                         worker_pool_actor workers, build_options options, event_sink events, std::string store_real_dir,
                                         slot_pool_actor pool, std::shared_ptr<shared_goals> shared) {
  auto& initial = self->state;
  initial.me = caf::actor_cast<scheduler_actor>(self);
  // The run's own actors end with its scheduler.
  self->link_to(store);
  self->link_to(substituters);
  self->link_to(logger);
  initial.pool = std::move(pool);
  initial.shared = std::move(shared);
  initial.store = std::move(store);
  initial.substituters = std::move(substituters);
  initial.logger = std::move(logger);
  initial.host = std::move(host);
  initial.workers = std::move(workers);
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
        auto parent = asking_goal(self);
        auto rp = self->make_response_promise<build_result>();
        want(self, req, false, top_level, [rp](const build_result& r) mutable { rp.deliver(r); }, parent);
        return rp;
      },
      [=](want_atom, const std::vector<goal_request>& reqs) -> caf::typed_response_promise<std::vector<build_result>> {
        auto rp = self->make_response_promise<std::vector<build_result>>();
        auto left = std::make_shared<std::size_t>(reqs.size());
        auto finish = [self, rp]() mutable {
          rp.deliver(self->state.results);
          self->state.answered = true;
          end_if_idle(self);
        };
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
        auto parent = asking_goal(self);
        auto rp = self->make_response_promise<build_result>();
        want(self, goal_request{path, {}}, true, false, [rp](const build_result& r) mutable { rp.deliver(r); },
             parent);
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
        } else if (st.cancelling && !kept(st, holder)) {
          rp.deliver(cancelled_error());
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
      [=](hook_atom, const std::string& drv, const std::string& program) {
        emit(self, engine_event::hook_started, drv, program);
      },
      [=](hook_atom, const std::string& drv, const std::string&, const std::string& output) {
        std::size_t pos = 0;
        while (pos < output.size()) {
          auto nl = output.find('\n', pos);
          emit(self, engine_event::hook_output, drv, output.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
          pos = nl == std::string::npos ? output.size() : nl + 1;
        }
        emit(self, engine_event::hook_ended, drv, "");
      },
      [=](copied_atom, const std::vector<std::string>& paths, const std::string& from) {
        for (auto& p : paths)
          emit(self, engine_event::copied, p, from);
      },
      [=](status_atom, const std::string& drv, const std::string& what) {
        emit(self, engine_event::building, drv, what);
      },
      [=](cancel_atom) {
        self->state.ticking = false;
        cancel_all(self);
      },
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
                                logger_actor logger, std::shared_ptr<build_host> host, worker_pool_actor workers,
                                build_options options, event_sink events, std::string store_real_dir,
                                slot_pool_actor pool, std::shared_ptr<shared_goals> shared) {
  return sys.spawn(scheduler, std::move(store), std::move(substituters), std::move(logger), std::move(host),
                   std::move(workers),
                   std::move(options), std::move(events),
                   std::move(store_real_dir), std::move(pool), std::move(shared));
}

} // namespace kiln
