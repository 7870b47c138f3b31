// The worker pool's leases (worker_pool_state.hpp): a round's builder on
// the live worker with the fewest rounds, taken from its idle builders
// (one spare is kept ready) or spawned; given back when the round is over,
// to serve the next one or to end; and the substituters of runs' pools.
#include "actors/worker_pool_state.hpp"

#include <algorithm>

namespace kiln::worker_pool_impl {

namespace {

// A builder worker i spawned: watched for as long as it lives.
void watch_builder(pool_ptr self, std::size_t i, const builder_actor& b) {
  self->monitor(b);
  self->state.builders[b.address()] = i;
}

} // namespace

// The next spare builder of worker i, asked for in the background.
void ask_spare(pool_ptr self, std::size_t i) {
  auto& s = self->state.slots[i];
  if (!s.alive || !s.idle.empty() || s.asking_spare)
    return;
  s.asking_spare = true;
  pid_t pid = s.pid;
  self->request(s.front, worker_request_timeout, spawn_atom::value)
      .then(
          [=](builder_actor& b) {
            auto& slot = self->state.slots[i];
            if (slot.pid != pid || !slot.alive) {
              caf::anon_send_exit(b, caf::exit_reason::user_shutdown); // see give_back
              return;
            }
            slot.asking_spare = false;
            watch_builder(self, i, b);
            slot.idle.push_back(b);
          },
          [=](caf::error&) {
            auto& slot = self->state.slots[i];
            if (slot.pid == pid)
              slot.asking_spare = false; // leases ask directly until the next try
          });
}

namespace {

// Worker i's builder for a lease, told of; the goal is watched (one that
// ends holding it gives it back).
void lease_to(pool_ptr self, std::size_t i, builder_actor b, waiting_lease& w) {
  self->state.leased[w.lease] = {i, w.drv, b, w.goal};
  w.promise.deliver(b, self->state.slots[i].front, w.lease);
}

} // namespace

// The round of `lease` is over: its log's lease entry goes (through the
// front, behind the lines the builder sent), and its builder serves
// another round, or ends (not `reusable`, or its worker is gone).
void give_back(pool_ptr self, uint64_t lease, bool reusable) {
  auto& st = self->state;
  auto it = st.leased.find(lease);
  if (it == st.leased.end())
    return;
  auto l = std::move(it->second);
  st.leased.erase(it);
  auto& s = st.slots[l.slot];
  if (s.rounds > 0)
    --s.rounds;
  if (s.front)
    self->send(s.front, forget_atom::value, l.drv, lease);
  auto watched = st.builders.find(l.builder.address());
  if (reusable && s.alive && watched != st.builders.end() && watched->second == l.slot &&
      s.idle.size() < max_idle_builders)
    s.idle.push_back(l.builder);
  else
    // It releases what it holds. Anonymously: an exit message carries its
    // sender's address, and no worker may hold the pool's.
    caf::anon_send_exit(l.builder, caf::exit_reason::user_shutdown);
}

namespace {

// The live worker with the least of `count`, if any.
std::optional<std::size_t> least_busy(const pool_state& st, uint32_t worker_slot::*count) {
  std::optional<std::size_t> best;
  for (std::size_t i = 0; i < st.slots.size(); ++i)
    if (st.slots[i].alive && (!best || st.slots[i].*count < st.slots[*best].*count))
      best = i;
  return best;
}

// No live worker for `w`: it waits for one, or fails if none will come.
template <class Waiting>
void wait_for_worker(pool_state& st, Waiting w, std::deque<Waiting>& queue) {
  if (all_given_up(st))
    w.promise.deliver(no_workers());
  else
    queue.push_back(std::move(w));
}

} // namespace

// A round's builder on the live worker with the fewest rounds.
void hand_out(pool_ptr self, waiting_lease w) {
  auto& st = self->state;
  auto best = least_busy(st, &worker_slot::rounds);
  if (!best)
    return wait_for_worker(st, std::move(w), st.waiting);
  std::size_t i = *best;
  auto& s = st.slots[i];
  w.lease = ++st.leases;
  s.leases->put(w.drv, {w.logger, w.lease});
  ++s.rounds;
  if (!s.idle.empty()) {
    auto b = s.idle.back();
    s.idle.pop_back();
    lease_to(self, i, b, w);
    return ask_spare(self, i);
  }
  pid_t pid = s.pid;
  self->request(s.front, worker_request_timeout, spawn_atom::value)
      .then(
          [=](builder_actor& b) mutable {
            auto& slot = self->state.slots[i];
            if (slot.pid != pid || !slot.alive) {
              w.promise.deliver(caf::make_error(engine_errc::worker_lost, worker_name(self, i) + " was lost"));
              return;
            }
            watch_builder(self, i, b);
            lease_to(self, i, b, w);
          },
          [=](caf::error& e) mutable {
            auto& slot = self->state.slots[i];
            if (slot.pid == pid && slot.rounds > 0) {
              --slot.rounds;
              slot.leases->drop(w.drv, w.lease);
            }
            w.promise.deliver(caf::make_error(engine_errc::worker_lost,
                                              worker_name(self, i) + " gave no builder: " + self->system().render(e)));
          });
}

// A substituter for a run's pool, on the live worker with fewest.
void hand_out_substituter(pool_ptr self, waiting_substituter w) {
  auto& st = self->state;
  auto best = least_busy(st, &worker_slot::substituters);
  if (!best)
    return wait_for_worker(st, std::move(w), st.waiting_substituters);
  std::size_t i = *best;
  auto& s = st.slots[i];
  ++s.substituters;
  pid_t pid = s.pid;
  auto promise = w.promise;
  self->request(s.front, worker_request_timeout, spawn_atom::value, w.root, w.options)
      .then(
          [=](one_substituter_actor& sub) mutable {
            auto& slot = self->state.slots[i];
            if (slot.pid != pid || !slot.alive) {
              promise.deliver(caf::make_error(engine_errc::worker_lost, worker_name(self, i) + " was lost"));
              return;
            }
            self->monitor(sub);
            self->state.substituters[sub.address()] = i;
            promise.deliver(sub, slot.front);
          },
          [=](caf::error& e) mutable {
            auto& slot = self->state.slots[i];
            if (slot.pid == pid && slot.substituters > 0)
              --slot.substituters;
            if (e.category() != caf::atom("kiln"))
              e = caf::make_error(engine_errc::worker_lost,
                                  worker_name(self, i) + " gave no substituter: " + self->system().render(e));
            promise.deliver(std::move(e));
          });
}

void serve_waiting(pool_ptr self) {
  auto waiting = std::move(self->state.waiting);
  self->state.waiting.clear();
  for (auto& w : waiting)
    hand_out(self, std::move(w));
  auto substituters = std::move(self->state.waiting_substituters);
  self->state.waiting_substituters.clear();
  for (auto& w : substituters)
    hand_out_substituter(self, std::move(w));
}

bool lease_holder_down(pool_ptr self, const caf::down_msg& dm) {
  auto& state = self->state;
  if (auto b = state.builders.find(dm.source); b != state.builders.end()) {
    auto& idle = state.slots[b->second].idle;
    idle.erase(std::remove_if(idle.begin(), idle.end(), [&](auto& x) { return x.address() == dm.source; }),
               idle.end());
    state.builders.erase(b);
    std::vector<uint64_t> its;
    for (auto& [lease, l] : state.leased)
      if (l.builder.address() == dm.source)
        its.push_back(lease);
    for (auto lease : its)
      give_back(self, lease, false);
    return true;
  }
  // A goal that ended holding a lease.
  std::vector<uint64_t> held;
  for (auto& [lease, l] : state.leased)
    if (l.goal == dm.source)
      held.push_back(lease);
  for (auto lease : held)
    give_back(self, lease, false);
  if (!held.empty())
    return true;
  if (auto sub = state.substituters.find(dm.source); sub != state.substituters.end()) {
    auto& s = state.slots[sub->second];
    if (s.substituters > 0)
      --s.substituters;
    state.substituters.erase(sub);
    return true;
  }
  return false;
}

} // namespace kiln::worker_pool_impl
