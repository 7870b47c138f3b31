// kilnd's front for one kiln-worker (actors/worker_pool.cpp spawns one per
// worker): the only kilnd actor the worker is given. A worker is untrusted,
// so the front passes on, to a run's logger, only the lines of rounds
// leased on that worker; it opens no log (the goal opens a round's log).
#pragma once

#include "messages/interfaces.hpp"

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace kiln {

struct lease_entry {
  logger_actor logger;
  uint64_t lease = 0; // which lease of the .drv (a round tried again is another)
};

// The rounds leased on one worker, by .drv: what its front lets through.
// The pool writes it, the front reads it (each on its own thread).
struct lease_table {
  std::mutex mutex;
  std::map<std::string, lease_entry> by_drv;
  std::optional<lease_entry> find(const std::string& drv);
  void put(const std::string& drv, lease_entry e);
  // Only the entry of that lease: a later lease of the same .drv stays.
  void drop(const std::string& drv, uint64_t lease);
};

// The front, checking every message against `leases`; it ends with `pool`.
// Lines are taken only from `worker`'s node (its worker process):
// every worker can address the actors whose handles any worker was given,
// so another worker's front is within its reach too.
worker_front_actor spawn_worker_front(caf::local_actor* parent, std::shared_ptr<lease_table> leases, caf::actor pool,
                                      worker_actor worker);

// How long the front waits for its worker's hello, or for a builder or a
// substituter it spawns (and the pool, asking the front, as long).
constexpr auto worker_request_timeout = std::chrono::seconds(5);

} // namespace kiln
