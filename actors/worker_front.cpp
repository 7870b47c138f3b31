#include "actors/worker_front.hpp"

#include "actors/actors.hpp"
#include "actors/log_window.hpp"


namespace kiln {

std::optional<lease_entry> lease_table::find(const std::string& drv) {
  std::lock_guard<std::mutex> lock(mutex);
  auto it = by_drv.find(drv);
  return it == by_drv.end() ? std::nullopt : std::optional<lease_entry>(it->second);
}

void lease_table::put(const std::string& drv, lease_entry e) {
  std::lock_guard<std::mutex> lock(mutex);
  by_drv[drv] = std::move(e);
}

void lease_table::drop(const std::string& drv, uint64_t lease) {
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = by_drv.find(drv); it != by_drv.end() && it->second.lease == lease)
    by_drv.erase(it);
}

namespace {

// `atom, xs...` asked of `target` by the front itself and the answer passed
// back: the asker never sees `target`, nor `target` the asker. (A delegate
// would have `target` answer the asker directly, and so hand a worker a
// handle of it: of a run's logger, say, which it could then kill.)
template <class T, class Target, class Atom, class... Ts>
caf::result<T> relay(worker_front_actor::pointer self, const Target& target, caf::timespan bound, Atom atom,
                     Ts&&... xs) {
  auto rp = self->make_response_promise<T>();
  self->request(target, bound, atom, std::forward<Ts>(xs)...)
      .then([rp](T& answer) mutable { rp.deliver(std::move(answer)); },
            [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
  return rp;
}

// A request of kilnd's (a goal's to its builder, the pool's to the worker)
// made by the front, and its answer passed back.
template <class T, class Target, class Atom, class... Ts>
caf::result<T> pass_on(worker_front_actor::pointer self, const Target& target, caf::timespan bound, Atom atom,
                       Ts&&... xs) {
  if (!sent_from_here(self) || !target)
    return caf::make_error(caf::sec::unexpected_message);
  return relay<T>(self, target, bound, atom, std::forward<Ts>(xs)...);
}

// Sent by the front's own worker.
bool from_its_worker(worker_front_actor::pointer self, const caf::node_id& worker) {
  auto sender = self->current_sender();
  return sender && sender->node() == worker;
}

worker_front_actor::behavior_type worker_front(worker_front_actor::pointer self, std::shared_ptr<lease_table> leases,
                                               caf::actor pool, worker_actor process) {
  caf::node_id worker = process.node();
  self->monitor(pool);
  self->set_down_handler([=](caf::down_msg&) { self->quit(); });
  return {
      // kilnd's goal opens a round's log before the round: a worker names no file.
      [=](log_open_atom, const std::string&, const std::string&, const std::string&) {},
      [=](log_atom, const std::string& drv, const std::string& bytes) -> caf::result<uint64_t> {
        auto l = from_its_worker(self, worker) ? leases->find(drv) : std::nullopt;
        if (!l)
          return caf::make_error(caf::sec::unexpected_message);
        return relay<uint64_t>(self, l->logger, log_write_timeout, log_atom::value, drv, bytes);
      },
      [=](log_close_atom, const std::string& drv) -> caf::result<bool> {
        auto l = from_its_worker(self, worker) ? leases->find(drv) : std::nullopt;
        if (!l)
          return caf::make_error(caf::sec::unexpected_message);
        return relay<bool>(self, l->logger, log_write_timeout, log_close_atom::value, drv);
      },
      // Messages are handled in turn: what came before has been passed on.
      [=](flushed_atom) { return true; },
      // Sent by the pool once it saw the round's builder end, so it comes
      // after everything that builder sent. Not from the worker.
      [=](forget_atom, const std::string& drv, uint64_t lease) {
        if (sent_from_here(self))
          leases->drop(drv, lease);
      },
      [=](run_atom, const builder_actor& b, uint64_t round, build_request& r, caf::timespan bound) {
        return pass_on<build_report>(self, b, bound, run_atom::value, round, std::move(r));
      },
      [=](release_atom, const builder_actor& b, uint64_t round, bool keep, caf::timespan bound) {
        return pass_on<std::string>(self, b, bound, release_atom::value, round, keep);
      },
      [=](cancel_atom, const builder_actor& b, uint64_t round) {
        if (sent_from_here(self) && b)
          self->send(b, cancel_atom::value, round);
      },
      [=](hello_atom) {
        return pass_on<int32_t>(self, process, worker_request_timeout, hello_atom::value,
                                caf::actor_cast<logger_actor>(self));
      },
      [=](spawn_atom) { return pass_on<builder_actor>(self, process, worker_request_timeout, spawn_atom::value); },
      [=](spawn_atom, std::string& root, build_options& options) {
        return pass_on<one_substituter_actor>(self, process, worker_request_timeout, spawn_atom::value, std::move(root),
                                              std::move(options));
      },
      [=](cancel_atom, const one_substituter_actor& s) {
        if (sent_from_here(self))
          self->send(process, cancel_atom::value, s);
      },
      [=](subst_atom, const one_substituter_actor& s, std::string& path, uint32_t index, bool repair,
          caf::timespan bound) {
        return pass_on<substitute_outcome>(self, s, bound, subst_atom::value, std::move(path), index, repair);
      },
      [=](probe_atom, const one_substituter_actor& s, std::string& path, uint32_t index, caf::timespan bound) {
        return pass_on<substitute_outcome>(self, s, bound, probe_atom::value, std::move(path), index);
      },
  };
}

} // namespace

worker_front_actor spawn_worker_front(caf::local_actor* parent, std::shared_ptr<lease_table> leases, caf::actor pool,
                                      worker_actor worker) {
  return parent->spawn(worker_front, std::move(leases), std::move(pool), std::move(worker));
}

} // namespace kiln
