// Substitution's own slots (max-substitution-jobs): a pool that hands
// each request to an idle substituter, starting one (up to the limit)
// when none is idle, and queues the rest. Each substituter is detached
// (downloads, decompression and unpacking block) and has its own store
// connection and its own substituters, opened once; the pool says a
// substituter's "cannot be used" warning once for all of them.
#include "actors/actors.hpp"

#include "store/cache/substituter.hpp"
#include "store/io/error.hpp"

#include <deque>
#include <set>

namespace kiln {

namespace {

struct worker_state {
  std::unique_ptr<local_store> store;
  std::unique_ptr<substituter_set> substituters;
  trusted_keys keys;
  bool require_sigs = true;
  static inline const char* name = "substituter";
};

substituter_actor::behavior_type substituter_worker(substituter_actor::stateful_pointer<worker_state> self,
                                                    store_layout layout, std::shared_ptr<temp_roots> roots,
                                                    build_options options, trusted_keys keys,
                                                    cache_client_settings remote) {
  auto& initial = self->state;
  initial.keys = std::move(keys);
  initial.require_sigs = options.require_sigs;
  initial.substituters = std::make_unique<substituter_set>(options.substituters, std::move(remote));
  return {
      [=](subst_atom, const std::string& path, uint32_t index, bool repair) -> caf::result<substitute_outcome> {
        auto& st = self->state;
        try {
          if (!st.store)
            st.store = std::make_unique<local_store>(layout, roots);
          return st.substituters->substitute(index, *st.store, st.store->parse_path(path), st.keys,
                                             st.require_sigs, repair);
        } catch (const std::exception& e) {
          return caf::make_error(engine_errc::store_failure, std::string(e.what()));
        }
      },
  };
}

struct queued {
  std::string path;
  uint32_t index;
  bool repair;
  caf::typed_response_promise<substitute_outcome> promise;
};

struct pool_state {
  std::size_t max_jobs = 16;
  std::vector<substituter_actor> workers;
  std::vector<substituter_actor> idle;
  std::deque<queued> waiting;
  std::set<uint32_t> warned; // substituters whose unusability was said
  std::function<substituter_actor()> start_worker;
  static inline const char* name = "substituter-pool";
};

using pool_ptr = substituter_actor::stateful_pointer<pool_state>;

void dispatch(pool_ptr self) {
  auto& st = self->state;
  while (!st.waiting.empty()) {
    substituter_actor worker;
    if (!st.idle.empty()) {
      worker = st.idle.back();
      st.idle.pop_back();
    } else if (st.workers.size() < st.max_jobs) {
      worker = st.start_worker();
      st.workers.push_back(worker);
    } else {
      return;
    }
    queued q = std::move(st.waiting.front());
    st.waiting.pop_front();
    auto promise = q.promise;
    uint32_t index = q.index;
    self->request(worker, caf::infinite, subst_atom::value, q.path, q.index, q.repair)
        .then(
            [=](substitute_outcome& o) mutable {
              auto& now = self->state;
              // Said once for the run, however many substituters hit it.
              if (o.kind == substitute_outcome::unusable && !now.warned.insert(index).second)
                o.kind = substitute_outcome::absent;
              promise.deliver(std::move(o));
              now.idle.push_back(worker);
              dispatch(self);
            },
            [=](caf::error& e) mutable {
              promise.deliver(std::move(e));
              self->state.idle.push_back(worker);
              dispatch(self);
            });
  }
}

substituter_actor::behavior_type substituter_pool(pool_ptr self, store_layout layout,
                                                  std::shared_ptr<temp_roots> roots, build_options options,
                                                  trusted_keys keys, cache_client_settings remote) {
  auto& st = self->state;
  st.max_jobs = std::max<uint32_t>(1, options.max_substitution_jobs);
  st.start_worker = [self, layout, roots, options, keys, remote] {
    auto worker =
        self->home_system().spawn<caf::detached>(substituter_worker, layout, roots, options, keys, remote);
    self->link_to(worker); // the workers end with the pool
    return worker;
  };
  return {
      [=](subst_atom, const std::string& path, uint32_t index,
          bool repair) -> caf::typed_response_promise<substitute_outcome> {
        auto rp = self->make_response_promise<substitute_outcome>();
        self->state.waiting.push_back({path, index, repair, rp});
        dispatch(self);
        return rp;
      },
  };
}

} // namespace

substituter_actor spawn_substituter_pool(caf::actor_system& sys, const local_store& store,
                                         const build_options& options) {
  trusted_keys keys;
  try {
    keys = make_trusted_keys(options.trusted_public_keys);
  } catch (const error& e) {
    throw error(std::string("setting 'trusted-public-keys': ") + e.what());
  }
  cache_client_settings remote;
  remote.http.attempts = options.download_attempts;
  remote.http.stalled_timeout = options.stalled_download_timeout;
  remote.http.connect_timeout = options.connect_timeout;
  remote.http.netrc_file = options.netrc_file;
  remote.http.ca_file = options.ssl_cert_file;
  remote.positive_ttl = options.narinfo_positive_ttl;
  remote.negative_ttl = options.narinfo_negative_ttl;
  remote.lookup_cache = narinfo_cache::default_file();
  return sys.spawn(substituter_pool, store.layout(), store.roots(), options, std::move(keys), std::move(remote));
}

} // namespace kiln
