// What a run's scheduler shares with the other runs of its engine_host
// (kilnd's clients; shared_goals.hpp): the derivations it wants, counted
// across runs; its goals offered to runs with the same build options, and
// theirs joined; and a cancel that stops only what no other run wants,
// keeping the inputs of what it keeps.
#include "actors/scheduler_state.hpp"

namespace kiln::scheduling {

void count_interest(scheduler_state& st, const std::string& drv) {
  if (!st.shared || st.cancelling)
    return;
  st.shared->add_interest(drv);
  st.counted.insert(drv);
}

void uncount_interest(scheduler_state& st, const std::string& drv) {
  auto c = st.counted.find(drv);
  if (c == st.counted.end())
    return;
  st.shared->remove_interest(drv);
  st.counted.erase(c);
}

void withdraw_offer(scheduler_state& st, const std::string& drv, goal_entry& e) {
  if (e.profile.empty())
    return;
  st.shared->withdraw(e.profile, drv, st.me);
  e.profile.clear();
}

// The same options make the same goal, except those that only say how
// much a run does at once or shows.
std::string profile_of(build_options o) {
  if (!o.given_derivations.empty()) // built as given, not as the store has it
    return {};
  o.max_jobs = 0;
  o.keep_going = false;
  o.print_build_logs = false;
  return caf::deep_to_string(o);
}

void stop_watching(scheduler_state& st, goal_entry& e) {
  if (e.watch)
    st.shared->unwatch(e.watch);
  e.watch = 0;
}

namespace {

// The other run's goal answered this run's request (or could not).
void joined_answer(sched_ptr self, const std::string& drv, build_result r) {
  auto& st = self->state;
  auto it = st.drv_goals.find(drv);
  if (it == st.drv_goals.end() || it->second.joins == 0) // answered already (cancelled)
    return;
  goal_entry& e = it->second;
  uncount_interest(st, drv);
  if (--e.joins > 0) // a later request (more outputs) answers for all
    return;
  e.owner = nullptr;
  stop_watching(st, e);
  if (r.cancelled && !st.cancelling) // that run gave it up: a goal of our own
    return start_goal(self, drv, e, false);
  finish_entry(self, {drv, false}, std::move(r));
}

} // namespace

// Asks the run that has a goal for `drv` for its outputs wanted here.
void join_goal(sched_ptr self, const std::string& drv, goal_entry& e) {
  ++e.joins;
  emit(self, engine_event::building, drv, "waiting for another client's build of '" + drv + "'");
  // Its log lines shown here too, as if it were this run's build.
  auto& st = self->state;
  if (!e.watch && st.events && st.options.print_build_logs)
    e.watch = st.shared->watch(
        drv, [events = st.events](const std::string& d, const std::string& line) { events(log_line_event(d, line)); });
  self->request(e.owner, build_wait_timeout, want_atom::value, goal_request{drv, e.outputs}, false)
      .then([=](build_result& r) { joined_answer(self, drv, std::move(r)); },
            [=](caf::error&) { joined_answer(self, drv, cancelled_result(drv)); });
}

caf::error cancelled_error() {
  return caf::make_error(engine_errc::cancelled, std::string("cancelled: another build failed"));
}

bool kept(const scheduler_state& st, const caf::actor_addr& holder) {
  auto it = st.by_actor.find(holder);
  return it != st.by_actor.end() && st.kept.count(it->second);
}

// Stops what nobody wants any more; called again while something is kept.
void cancel_all(sched_ptr self) {
  auto& st = self->state;
  if (!st.cancelling) {
    st.cancelling = true;
    for (auto& drv : st.counted)
      st.shared->remove_interest(drv);
    st.counted.clear();
  }
  st.kept.clear();
  std::vector<goal_key> todo;
  if (st.shared)
    for (auto& [drv, e] : st.drv_goals)
      if (e.goal && st.shared->wanted(drv))
        todo.push_back({drv, false});
  while (!todo.empty()) {
    goal_key k = std::move(todo.back());
    todo.pop_back();
    if (!st.kept.insert(k).second)
      continue;
    if (auto c = st.children.find(k); c != st.children.end())
      todo.insert(todo.end(), c->second.begin(), c->second.end());
  }
  for (auto* table : {&st.drv_goals, &st.path_goals})
    for (auto& [key, e] : *table)
      if (e.goal && !e.cancel_sent && !st.kept.count({key, e.is_path})) {
        withdraw_offer(st, key, e);
        e.cancel_sent = true;
        caf::anon_send(e.goal, cancel_atom::value);
      }
  std::deque<queued_slot> still_wanted;
  for (auto& q : st.slot_queue)
    if (kept(st, q.holder))
      still_wanted.push_back(std::move(q));
    else
      q.promise.deliver(cancelled_error());
  st.slot_queue = std::move(still_wanted);
  // What this run waits for from other runs it no longer wants.
  for (auto& [drv, e] : st.drv_goals)
    if (e.joins) {
      e.joins = 0;
      e.owner = nullptr;
      stop_watching(st, e);
      finish_entry(self, {drv, false}, cancelled_result(drv));
    }
  if (!st.kept.empty() && !st.ticking) {
    st.ticking = true;
    self->delayed_send(st.me, std::chrono::milliseconds(250), cancel_atom::value);
  }
}

} // namespace kiln::scheduling
