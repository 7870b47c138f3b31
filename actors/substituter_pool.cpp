// Substitution's own slots (max-substitution-jobs): a pool that hands
// each request to an idle substituter, starting one (up to the limit)
// when none is idle, and queues the rest. Each substituter is detached
// (downloads, decompression and unpacking block) and has its own store
// connection and its own substituters, opened once; the pool says a
// substituter's "cannot be used" warning once for all of them. In kilnd
// with worker processes the substituters live there (leased from the
// worker pool), so a cache's bytes are handled outside kilnd; one whose
// worker is lost mid-copy leaves nothing registered (the store's add is
// atomic), and the copy is asked again of another.
#include "actors/actors.hpp"

#include "store/cache/substituter.hpp"
#include "store/io/error.hpp"
#include "store/local/temp_roots.hpp"

#include <deque>
#include <set>

namespace kiln {

namespace {

// Finite bounds on requests that may cross to a worker: a lease waits for
// a worker (re)starting; a copy is bounded by the downloads' own stall
// timeouts, and a lost worker is noticed by its monitor, long before this.
constexpr auto lease_timeout = std::chrono::minutes(2);
constexpr auto copy_timeout = std::chrono::minutes(24 * 60); // CAF 0.17 has no hours

cache_client_settings client_settings(const build_options& options) {
  cache_client_settings remote;
  remote.http.attempts = options.download_attempts;
  remote.http.stalled_timeout = options.stalled_download_timeout;
  remote.http.connect_timeout = options.connect_timeout;
  remote.http.netrc_file = options.netrc_file;
  remote.http.ca_file = options.ssl_cert_file;
  remote.positive_ttl = options.narinfo_positive_ttl;
  remote.negative_ttl = options.narinfo_negative_ttl;
  remote.lookup_cache = narinfo_cache::default_file();
  return remote;
}

trusted_keys keys_of(const build_options& options) {
  try {
    return make_trusted_keys(options.trusted_public_keys);
  } catch (const error& e) {
    throw error(std::string("setting 'trusted-public-keys': ") + e.what());
  }
}

struct substituter_state {
  std::unique_ptr<local_store> store;
  std::unique_ptr<substituter_set> substituters;
  trusted_keys keys;
  bool require_sigs = true;
  static inline const char* name = "substituter";
};

// `work` on the substituter's store (opened on first use); a failure is
// an error value.
template <class Work>
caf::result<substitute_outcome> with_store(one_substituter_actor::stateful_pointer<substituter_state> self,
                                          const store_layout& layout, const std::shared_ptr<temp_roots>& roots,
                                          Work work) {
  auto& st = self->state;
  try {
    if (!st.store)
      st.store = std::make_unique<local_store>(layout, roots);
    return work(*st.store, *st.substituters);
  } catch (const std::exception& e) {
    return caf::make_error(engine_errc::store_failure, std::string(e.what()));
  }
}

// `cancelled`: once set, its downloads stop (the pool that started it ended).
one_substituter_actor::behavior_type one_substituter(one_substituter_actor::stateful_pointer<substituter_state> self,
                                                     store_layout layout, std::shared_ptr<temp_roots> roots,
                                                     build_options options, trusted_keys keys,
                                                     std::shared_ptr<std::atomic<bool>> cancelled) {
  auto& initial = self->state;
  initial.keys = std::move(keys);
  initial.require_sigs = options.require_sigs;
  auto remote = client_settings(options);
  remote.http.cancelled = std::move(cancelled);
  initial.substituters = std::make_unique<substituter_set>(options.substituters, std::move(remote));
  return {
      [=](subst_atom, const std::string& path, uint32_t index, bool repair) -> caf::result<substitute_outcome> {
        return with_store(self, layout, roots, [&](local_store& store, substituter_set& subs) {
          return subs.substitute(index, store, store.parse_path(path), self->state.keys, self->state.require_sigs,
                                 repair);
        });
      },
      [=](probe_atom, const std::string& path, uint32_t index) -> caf::result<substitute_outcome> {
        return with_store(self, layout, roots, [&](local_store& store, substituter_set& subs) {
          return subs.probe(index, store, store.parse_path(path), self->state.keys, self->state.require_sigs);
        });
      },
  };
}

struct queued {
  std::string path;
  uint32_t index;
  bool repair;
  bool probe; // look only (probe_atom), do not copy
  caf::typed_response_promise<substitute_outcome> promise;
  uint32_t lost = 0; // workers lost under it so far
};

struct pool_state {
  std::size_t max_jobs = 16;
  uint32_t max_retries = 2;
  std::vector<one_substituter_actor> workers;
  std::vector<one_substituter_actor> idle;
  // Those on workers, with the worker's front, through which they are asked.
  std::map<caf::actor_addr, worker_front_actor> fronts;
  std::map<caf::actor_addr, queued> busy;
  uint32_t starting = 0; // leases asked of the worker pool, not yet answered
  std::deque<queued> waiting;
  std::set<uint32_t> warned; // substituters whose unusability was said
  std::shared_ptr<temp_roots> roots;
  std::function<void()> start_worker; // adds a worker to `idle`, at once or later
  static inline const char* name = "substituter-pool";
};

using pool_ptr = substituter_actor::stateful_pointer<pool_state>;

void dispatch(pool_ptr self);

void forget(pool_state& st, const caf::actor_addr& worker) {
  auto gone = [&](auto& v) {
    v.erase(std::remove_if(v.begin(), v.end(), [&](auto& w) { return w.address() == worker; }), v.end());
  };
  gone(st.workers);
  gone(st.idle);
  st.fronts.erase(worker);
}

// The worker under `q` was lost: nothing of it is registered (an add is
// one transaction), so the copy is asked again, of another worker.
void lost_under(pool_ptr self, queued q, const std::string& why) {
  auto& st = self->state;
  if (++q.lost > st.max_retries) {
    q.promise.deliver(caf::make_error(engine_errc::worker_lost,
                                      "the worker process copying '" + q.path + "' was lost (" + why + "), " +
                                          std::to_string(q.lost) + " times; not tried again"));
    return;
  }
  st.waiting.push_front(std::move(q));
}

// Asks `worker` for q's copy or probe; on a worker process, through its
// front (so the worker never sees the pool ask).
template <class Answered, class Failed>
void ask(pool_ptr self, const one_substituter_actor& worker, const queued& q, Answered answered, Failed failed) {
  auto front = self->state.fronts.find(worker.address());
  if (front == self->state.fronts.end()) {
    if (q.probe)
      self->request(worker, copy_timeout, probe_atom::value, q.path, q.index).then(answered, failed);
    else
      self->request(worker, copy_timeout, subst_atom::value, q.path, q.index, q.repair).then(answered, failed);
    return;
  }
  caf::timespan bound{copy_timeout};
  if (q.probe)
    self->request(front->second, copy_timeout, probe_atom::value, worker, q.path, q.index, bound).then(answered, failed);
  else
    self->request(front->second, copy_timeout, subst_atom::value, worker, q.path, q.index, q.repair, bound)
        .then(answered, failed);
}

void run(pool_ptr self, one_substituter_actor worker, queued q) {
  auto addr = worker.address();
  uint32_t index = q.index;
  auto answered = [=](substitute_outcome& o) {
    auto& st = self->state;
    auto it = st.busy.find(addr);
    if (it == st.busy.end())
      return; // its worker was taken for lost already
    auto promise = it->second.promise;
    st.busy.erase(it);
    // A worker's copies are rooted in its own temp roots: root them
    // here before telling the goal (the session's roots outlive it).
    if (o.kind == substitute_outcome::substituted && st.roots) {
      try {
        std::vector<store_path> copied;
        for (auto& p : o.copied)
          copied.push_back(parse_store_path(p));
        st.roots->add(copied);
      } catch (const std::exception& e) {
        promise.deliver(caf::make_error(engine_errc::store_failure,
                                        "a worker's substituter reported a bad path: " + std::string(e.what())));
        st.idle.push_back(worker);
        return dispatch(self);
      }
    }
    // Said once for the run, however many substituters hit it.
    if (o.kind == substitute_outcome::unusable && !st.warned.insert(index).second)
      o.kind = substitute_outcome::absent;
    promise.deliver(std::move(o));
    st.idle.push_back(worker);
    dispatch(self);
  };
  auto failed_with = [=](caf::error& e) {
    auto& st = self->state;
    auto it = st.busy.find(addr);
    if (it == st.busy.end())
      return;
    queued failed = std::move(it->second);
    st.busy.erase(it);
    if (e.category() == caf::atom("kiln")) {
      failed.promise.deliver(std::move(e));
      st.idle.push_back(worker);
    } else { // the worker did not answer: it is gone, or hung
      forget(st, addr);
      caf::anon_send_exit(worker, caf::exit_reason::kill); // anonymous: see ask
      lost_under(self, std::move(failed), self->system().render(e));
    }
    dispatch(self);
  };
  ask(self, worker, q, answered, failed_with);
  self->state.busy.emplace(addr, std::move(q));
}

void dispatch(pool_ptr self) {
  auto& st = self->state;
  while (!st.waiting.empty()) {
    if (st.idle.empty()) {
      if (st.workers.size() + st.starting >= st.max_jobs || st.starting >= st.waiting.size())
        return;
      st.start_worker();
      continue;
    }
    auto worker = st.idle.back();
    st.idle.pop_back();
    queued q = std::move(st.waiting.front());
    st.waiting.pop_front();
    run(self, worker, std::move(q));
  }
}

void add_worker(pool_ptr self, one_substituter_actor worker) {
  self->monitor(worker);
  self->state.workers.push_back(worker);
  self->state.idle.push_back(worker);
}

// kilnd: a substituter on a worker process, asked for in the background.
void lease_worker(pool_ptr self, worker_pool_actor workers, std::string root, build_options options,
                  std::shared_ptr<std::vector<caf::actor>> remote) {
  ++self->state.starting;
  self->request(workers, lease_timeout, lease_atom::value, root, options)
      .then(
          [=](one_substituter_actor& worker, worker_front_actor& front) {
            --self->state.starting;
            remote->push_back(caf::actor_cast<caf::actor>(worker));
            self->state.fronts[worker.address()] = front;
            add_worker(self, worker);
            dispatch(self);
          },
          [=](caf::error& e) {
            auto& st = self->state;
            --st.starting;
            // No worker to copy on: the first waiting copy fails with why
            // (its goal tries the next substituter, or builds).
            if (!st.waiting.empty()) {
              auto q = std::move(st.waiting.front());
              st.waiting.pop_front();
              q.promise.deliver(std::move(e));
            }
            dispatch(self);
          });
}

substituter_actor::behavior_type substituter_pool(pool_ptr self, store_layout layout,
                                                  std::shared_ptr<temp_roots> roots, build_options options,
                                                  trusted_keys keys, worker_pool_actor workers) {
  auto& st = self->state;
  st.max_jobs = std::max<uint32_t>(1, options.max_substitution_jobs);
  st.max_retries = options.max_build_retries;
  auto substituters = static_cast<uint32_t>(options.substituters.size());
  if (workers) {
    st.roots = roots;
    // A worker has no use for these.
    options.secret_key_files.clear();
    options.given_derivations.clear();
    // Remote actors are not linked (a lost worker must not take the pool
    // down): they are told to go when the pool ends, however it ends, and
    // their workers stop their downloads (a lookup stuck in a silent cache
    // would hold its thread and connection until stalled-download-timeout).
    auto remote = std::make_shared<std::vector<caf::actor>>();
    self->attach_functor([remote, workers, &sys = self->home_system()](const caf::error&) {
      caf::scoped_actor canceller{sys}; // the worker pool takes this only from here
      for (auto& w : *remote) {
        canceller->send(workers, cancel_atom::value, caf::actor_cast<one_substituter_actor>(w));
        caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
      }
    });
    st.start_worker = [=] { lease_worker(self, workers, layout.root, options, remote); };
  } else {
    // Its substituters may be blocked in a lookup nobody waits for any
    // more (a silent cache passed over): stopped when the pool ends, so
    // the run's end does not wait for them.
    auto cancelled = std::make_shared<std::atomic<bool>>(false);
    self->attach_functor([cancelled](const caf::error&) { *cancelled = true; });
    st.start_worker = [=] {
      auto worker = self->home_system().spawn<caf::detached>(one_substituter, layout, roots, options, keys, cancelled);
      self->link_to(worker); // the workers end with the pool
      add_worker(self, worker);
    };
  }
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& now = self->state;
    forget(now, dm.source);
    if (auto it = now.busy.find(dm.source); it != now.busy.end()) {
      queued q = std::move(it->second);
      now.busy.erase(it);
      lost_under(self, std::move(q), self->system().render(dm.reason));
    }
    dispatch(self);
  });
  return {
      // Its handle reaches the workers whose substituters it asks: it
      // takes requests only from kilnd's own actors (sent_from_here).
      [=](subst_atom, const std::string& path, uint32_t index, bool repair) -> caf::result<substitute_outcome> {
        if (!sent_from_here(self))
          return caf::make_error(caf::sec::unexpected_message);
        auto rp = self->make_response_promise<substitute_outcome>();
        self->state.waiting.push_back({path, index, repair, false, rp});
        dispatch(self);
        return rp;
      },
      [=](probe_atom, const std::string& path, uint32_t index) -> caf::result<substitute_outcome> {
        if (!sent_from_here(self))
          return caf::make_error(caf::sec::unexpected_message);
        auto rp = self->make_response_promise<substitute_outcome>();
        self->state.waiting.push_back({path, index, false, true, rp});
        dispatch(self);
        return rp;
      },
      [=](subst_any_atom, const std::string& path, bool repair) -> caf::result<substitute_outcome> {
        if (!sent_from_here(self))
          return caf::make_error(caf::sec::unexpected_message);
        auto any = spawn_substitute_any(self, caf::actor_cast<one_substituter_actor>(self), substituters);
        return self->delegate(any, subst_any_atom::value, path, repair);
      },
  };
}

} // namespace

one_substituter_actor spawn_substituter(caf::actor_system& sys, store_layout layout, std::shared_ptr<temp_roots> roots,
                                        const build_options& options, std::shared_ptr<std::atomic<bool>> cancelled) {
  return sys.spawn<caf::detached>(one_substituter, std::move(layout), std::move(roots), options, keys_of(options),
                                  std::move(cancelled));
}

substituter_actor spawn_substituter_pool(caf::actor_system& sys, const local_store& store,
                                         const build_options& options, worker_pool_actor workers) {
  trusted_keys keys = keys_of(options);
  return sys.spawn(substituter_pool, store.layout(), store.roots(), options, std::move(keys), std::move(workers));
}

} // namespace kiln
