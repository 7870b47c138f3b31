// The daemon-wide build slots (messages/interfaces.hpp, slot_pool_actor):
// schedulers wait in a ring, each taking one slot per turn.
#include "actors/actors.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <set>

namespace kiln {

namespace {

struct pool_state {
  uint32_t max_jobs = 1;
  uint64_t next_lease = 1;
  std::map<uint64_t, caf::actor_addr> leases;
  std::map<caf::actor_addr, std::deque<caf::typed_response_promise<uint64_t>>> waiting;
  std::deque<caf::actor_addr> turn; // schedulers with requests waiting, next first
  std::set<caf::actor_addr> monitored;
  static inline const char* name = "slot-pool";
};

using pool_ptr = slot_pool_actor::stateful_pointer<pool_state>;

void grant(pool_ptr self) {
  auto& st = self->state;
  while (st.leases.size() < st.max_jobs && !st.turn.empty()) {
    caf::actor_addr who = st.turn.front();
    st.turn.pop_front();
    auto& queue = st.waiting[who];
    auto promise = std::move(queue.front());
    queue.pop_front();
    uint64_t lease = st.next_lease++;
    st.leases[lease] = who;
    promise.deliver(lease);
    if (!queue.empty())
      st.turn.push_back(who); // to the back of the ring: the others go first
    else
      st.waiting.erase(who);
  }
}

slot_pool_actor::behavior_type slot_pool(pool_ptr self, uint32_t max_jobs) {
  self->state.max_jobs = std::max<uint32_t>(1, max_jobs);
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    for (auto it = st.leases.begin(); it != st.leases.end();)
      it = it->second == dm.source ? st.leases.erase(it) : std::next(it);
    st.waiting.erase(dm.source);
    st.monitored.erase(dm.source);
    st.turn.erase(std::remove(st.turn.begin(), st.turn.end(), dm.source), st.turn.end());
    grant(self);
  });
  return {
      [=](slot_atom) -> caf::typed_response_promise<uint64_t> {
        auto sender = self->current_sender(); // before the promise takes the request over
        auto rp = self->make_response_promise<uint64_t>();
        auto& st = self->state;
        caf::actor_addr who = sender ? sender->address() : caf::actor_addr();
        auto& queue = st.waiting[who];
        if (queue.empty())
          st.turn.push_back(who);
        queue.push_back(rp);
        if (sender && st.monitored.insert(who).second)
          self->monitor(caf::actor_cast<caf::actor>(sender));
        grant(self);
        return rp;
      },
      [=](release_atom, uint64_t lease) {
        self->state.leases.erase(lease);
        grant(self);
      },
  };
}

} // namespace

slot_pool_actor spawn_slot_pool(caf::actor_system& sys, uint32_t max_jobs) {
  return sys.spawn(slot_pool, max_jobs);
}

} // namespace kiln
