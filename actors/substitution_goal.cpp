// The substitution goal: make one store path valid without building it,
// in the reference's states:
//   init -> try_next_substituter -> finished
// Each substituter is tried in priority order through the substituter
// pool (substitution's own slots), which copies the path with its missing
// references (the reference's references_valid and try_to_run steps
// happen there, in one piece). A substituter is another
// local store or a binary cache (store/cache/substituter.hpp); one that
// fails is reported and the next is tried, as Nix does.
#include "actors/actors.hpp"

namespace kiln {

namespace {

struct subst_goal_state {
  std::string path;
  scheduler_actor scheduler;
  store_actor store;
  substituter_actor pool;
  uint32_t substituters = 0;
  uint32_t next = 0;
  std::string reasons; // why each substituter could not help
  static inline const char* name = "substitution_goal";
};

using subst_ptr = caf::stateful_actor<subst_goal_state>*;

void finished(subst_ptr self, build_status status, std::string text) {
  build_result r;
  r.path = self->state.path;
  r.status = status;
  r.error = std::move(text);
  if (is_success(status))
    r.outputs["out"] = self->state.path;
  self->send(self->state.scheduler, done_atom::value, std::move(r));
  self->quit();
}

// A line for the user (stderr), not for a build log.
void say(subst_ptr self, const std::string& line) {
  self->send(self->state.scheduler, notice_atom::value, self->state.path, line);
}

void try_next_substituter(subst_ptr self) {
  auto& st = self->state;
  if (st.next >= st.substituters)
    return finished(self, build_status::misc_failure,
                    "path '" + st.path + "' is required, but there is no substituter that can build it" + st.reasons);
  self->request(st.pool, caf::infinite, subst_atom::value, st.path, st.next++, false)
      .then(
          [=](const substitute_outcome& o) {
            if (o.kind == substitute_outcome::substituted) {
              self->send(self->state.scheduler, copied_atom::value, o.copied, o.from);
              return finished(self, build_status::substituted, "");
            }
            if (o.warns())
              say(self, "warning: " + o.message);
            self->state.reasons += "\n  " + o.message;
            try_next_substituter(self);
          },
          [=](caf::error& e) {
            say(self, "error: " + error_text(e));
            self->state.reasons += "\n  " + error_text(e);
            try_next_substituter(self);
          });
}

void init(subst_ptr self) {
  self->request(self->state.store, caf::infinite, invalid_atom::value, std::vector<std::string>{self->state.path})
      .then(
          [=](const std::vector<std::string>& invalid) {
            if (invalid.empty())
              return finished(self, build_status::already_valid, "");
            try_next_substituter(self);
          },
          [=](caf::error& e) { finished(self, build_status::misc_failure, error_text(e)); });
}

caf::behavior substitution_goal(subst_ptr self, scheduler_actor scheduler, store_actor store,
                                substituter_actor pool, std::string path, uint32_t substituters) {
  self->state.substituters = substituters;
  self->state.pool = std::move(pool);
  self->state.scheduler = std::move(scheduler);
  self->state.store = std::move(store);
  self->state.path = std::move(path);
  init(self);
  return {[=](cancel_atom) { finished(self, build_status::misc_failure, "cancelled"); }};
}

} // namespace

caf::actor spawn_substitution_goal(caf::local_actor* parent, scheduler_actor scheduler, store_actor store,
                                   substituter_actor pool, std::string path, uint32_t substituters) {
  return parent->spawn(substitution_goal, std::move(scheduler), std::move(store), std::move(pool), std::move(path),
                       substituters);
}

} // namespace kiln
