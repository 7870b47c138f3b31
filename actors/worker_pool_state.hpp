// The worker pool's state (actors/worker_pool.cpp), shared by its two
// halves: the workers' lives (worker_pool.cpp: start, loss, backoff,
// reaping, stop) and the leases on them (worker_leases.cpp: builders and
// substituters handed out and given back).
#pragma once

#include "actors/actors.hpp"
#include "actors/worker_front.hpp"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kiln::worker_pool_impl {

using clock_type = std::chrono::steady_clock;

struct worker_slot {
  pid_t pid = -1;
  worker_actor handle;
  worker_front_actor front;
  std::shared_ptr<lease_table> leases = std::make_shared<lease_table>();
  uint32_t rounds = 0; // leased now
  uint32_t substituters = 0; // of runs' substituter pools, alive now
  // Builders on it serving no round: a lease takes one without a round trip
  // to the worker (and, as kilnd has its proxy already, without a message
  // to watch it). One is spawned ahead when none is left.
  std::vector<builder_actor> idle;
  bool asking_spare = false;
  bool starting = false, alive = false, given_up = false;
  std::string trouble; // why a starting worker was killed (told once it is reaped)
  uint32_t failures = 0; // failed starts in a row
  clock_type::time_point alive_since;
  // kilnd's end of its link, duplicated: a stop cuts the link by it
  // (CAF's own descriptor may be closed and its number reused by then).
  int link = -1;
};

struct waiting_lease {
  caf::typed_response_promise<builder_actor, worker_front_actor, uint64_t> promise;
  std::string drv;
  logger_actor logger;
  caf::actor_addr goal; // gives it back, or ends holding it
  uint64_t lease = 0;   // its number, once it has a worker
};

// A builder leased for a round, until the goal gives it back.
struct leased_builder {
  std::size_t slot;
  std::string drv;
  builder_actor builder;
  caf::actor_addr goal;
};

// More idle builders than this on one worker are ended when given back.
constexpr std::size_t max_idle_builders = 64;

struct waiting_substituter {
  caf::typed_response_promise<one_substituter_actor, worker_front_actor> promise;
  std::string root;
  build_options options;
};

struct pool_state {
  worker_options options;
  caf::actor basp;
  std::vector<worker_slot> slots;
  std::deque<waiting_lease> waiting;
  std::deque<waiting_substituter> waiting_substituters;
  std::map<caf::actor_addr, std::size_t> builders; // every builder on a worker, watched -> slot
  std::map<uint64_t, leased_builder> leased;       // by lease number
  uint64_t leases = 0;                             // handed out so far (numbers them)
  std::map<caf::actor_addr, std::size_t> substituters;                     // -> slot
  // kilnd is stopping: no worker starts again; `stopped` is answered once
  // every worker has ended.
  bool stopping = false, stop_answered = false;
  caf::typed_response_promise<uint32_t> stopped;
  static inline const char* name = "worker_pool";
  ~pool_state() {
    for (auto& s : slots) {
      if (s.pid > 0)
        ::kill(s.pid, SIGKILL); // its builds die with it (PR_SET_PDEATHSIG)
      if (s.link >= 0)
        ::close(s.link);
    }
  }
};

using pool_ptr = worker_pool_actor::stateful_pointer<pool_state>;

// worker_pool.cpp
bool all_given_up(const pool_state& st);
caf::error no_workers();
std::string worker_name(pool_ptr self, std::size_t i);

// worker_leases.cpp
void ask_spare(pool_ptr self, std::size_t i);
void give_back(pool_ptr self, uint64_t lease, bool reusable);
void hand_out(pool_ptr self, waiting_lease w);
void hand_out_substituter(pool_ptr self, waiting_substituter w);
void serve_waiting(pool_ptr self);
// A down message about a builder, a substituter or a goal holding a
// lease; false if it is about none of them.
bool lease_holder_down(pool_ptr self, const caf::down_msg& dm);

} // namespace kiln::worker_pool_impl
