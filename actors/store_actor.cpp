// The store actor: the one owner of the store's database handle in this
// process. It runs detached, since every request does blocking I/O
// (SQLite, reading .drv files, syncing outputs).
#include "actors/actors.hpp"
#include "actors/build_steps.hpp"

#include <memory>

namespace kiln {

namespace {

struct store_state {
  std::shared_ptr<local_store> store;
  std::shared_ptr<build_steps> steps;
  static inline const char* name = "store";
};

// Store-library exceptions become error values at this boundary.
template <class F>
auto guarded(F f) -> caf::result<decltype(f())> {
  try {
    return f();
  } catch (const build_input_rejected& e) {
    return caf::make_error(engine_errc::input_rejected, std::string(e.what()));
  } catch (const std::exception& e) {
    return caf::make_error(engine_errc::store_failure, std::string(e.what()));
  }
}

store_actor::behavior_type store_behavior(store_actor::stateful_pointer<store_state> self,
                                          std::shared_ptr<local_store> store, std::shared_ptr<build_steps> steps_) {
  self->state.store = std::move(store);
  self->state.steps = std::move(steps_);
  auto steps = [self]() -> build_steps& { return *self->state.steps; };
  return {
      [=](load_atom, const std::string& drv) { return guarded([&] {
        return steps().load(drv); }); },
      [=](load_closure_atom, const std::string& drv) {
        return guarded([&] { return steps().load_closure(drv); });
      },
      [=](damaged_atom, const std::vector<std::string>& paths) {
        return guarded([&] { return steps().damaged(paths); });
      },
      [=](invalid_atom, const std::vector<std::string>& paths) {
        return guarded([&] { return steps().invalid(paths); });
      },
      [=](describe_atom, const build_round& r, const std::set<std::string>& recheck) {
        return guarded([&] { return steps().describe(r, recheck); });
      },
      [=](register_atom, const build_request& r, const build_report& report) {
        return guarded([&] { return steps().register_round(r, report); });
      },
  };
}

} // namespace

store_actor spawn_store_actor(caf::actor_system& sys, std::shared_ptr<local_store> store,
                              std::shared_ptr<build_steps> steps) {
  return sys.spawn<caf::detached>(store_behavior, std::move(store), std::move(steps));
}

} // namespace kiln
