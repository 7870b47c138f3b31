// The substitution goal: make one store path valid without building it,
// in the reference's states:
//   init -> substitute -> finished
// The pool takes the path from whichever substituter has it (all asked at
// once, priority deciding among those that answer promptly: see
// substitute_any.cpp), copying its missing references first (the
// reference's references_valid and try_to_run steps, in one piece). A
// substituter is another local store or a binary cache
// (store/cache/substituter.hpp); what each one passed over had to say is
// told, as Nix tells it.
#include "actors/actors.hpp"

namespace kiln {

namespace {

struct subst_goal_state {
  std::string path;
  scheduler_actor scheduler;
  store_actor store;
  substituter_actor pool;
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

void substitute(subst_ptr self) {
  self->request(self->state.pool, substitute_any_timeout, subst_any_atom::value, self->state.path, false)
      .then(
          [=](const substitute_outcome& o) {
            for (auto& line : o.notices)
              say(self, line);
            if (o.kind == substitute_outcome::substituted) {
              self->send(self->state.scheduler, copied_atom::value, o.copied, o.from);
              return finished(self, build_status::substituted, "");
            }
            finished(self, build_status::misc_failure,
                     "path '" + self->state.path + "' is required, but there is no substituter that can build it" +
                         o.message);
          },
          [=](caf::error& e) { finished(self, build_status::misc_failure, error_text(e)); });
}

void init(subst_ptr self) {
  self->request(self->state.store, store_query_timeout, invalid_atom::value, std::vector<std::string>{self->state.path})
      .then(
          [=](const std::vector<std::string>& invalid) {
            if (invalid.empty())
              return finished(self, build_status::already_valid, "");
            substitute(self);
          },
          [=](caf::error& e) { finished(self, build_status::misc_failure, error_text(e)); });
}

caf::behavior substitution_goal(subst_ptr self, scheduler_actor scheduler, store_actor store,
                                substituter_actor pool, std::string path) {
  self->state.pool = std::move(pool);
  self->state.scheduler = std::move(scheduler);
  self->state.store = std::move(store);
  self->state.path = std::move(path);
  init(self);
  return {[=](cancel_atom) { finished(self, build_status::misc_failure, "cancelled"); }};
}

} // namespace

caf::actor spawn_substitution_goal(caf::local_actor* parent, scheduler_actor scheduler, store_actor store,
                                   substituter_actor pool, std::string path) {
  return parent->spawn(substitution_goal, std::move(scheduler), std::move(store), std::move(pool), std::move(path));
}

} // namespace kiln
