// One path from whichever substituter has it (issue 17). Every substituter
// is asked at once (a probe: lookups and the signature check, no copy), so
// a slow or silent cache holds up no other. One that has the path is
// copied from as soon as every one before it in priority order has
// answered, or, once `priority_grace` has passed, as soon as it answered:
// priority decides among caches that answer promptly, the first to answer
// among the rest. A copy that fails is reported and the next substituter
// that has the path is tried, as Nix does. Probes and copies go through
// the pool, so they take substitution's slots.
//   ask_every_substituter -> copy_from (-> copy_from ...) -> answer
// A repair compares contents, which a probe cannot: substituters are
// tried in priority order, one after another. So is a lone substituter:
// probing it first would only make its lookups twice.
#include "actors/actors.hpp"

#include <chrono>
#include <utility>

namespace kiln {

namespace {

constexpr auto priority_grace = std::chrono::milliseconds(250);
// Bounds on the pool's answers: lookups retry and time out by themselves
// (download-attempts, stalled-download-timeout); a copy may be large.
constexpr auto probe_timeout = std::chrono::minutes(60);
constexpr auto copy_timeout = std::chrono::minutes(24 * 60);

using grace_atom = caf::atom_constant<caf::atom("grace")>;
using any_impl = any_actor::extend<caf::reacts_to<grace_atom>>;

enum class answer { pending, has_it, cannot, tried };

struct any_state {
  one_substituter_actor pool;
  std::string path;
  bool repair = false;
  caf::typed_response_promise<substitute_outcome> promise;
  std::vector<answer> answers;      // by substituter, in priority order
  std::vector<std::string> reasons; // why each could not help
  std::vector<std::string> notices; // its warning or error, told once it is passed over
  bool copying = false, grace_over = false, a_copy_failed = false;
  std::vector<std::string> told;    // notices of those passed over, in order
  static inline const char* name = "substitute_any";
};

using any_ptr = any_impl::stateful_pointer<any_state>;

void answer_with(any_ptr self, substitute_outcome o) {
  o.notices = std::move(self->state.told);
  self->state.promise.deliver(std::move(o));
  self->quit();
}

// `notice`: a line for the user, told when the substituter is passed over
// (as Nix says it on reaching it): not when one before it has the path.
void cannot(any_ptr self, uint32_t i, const std::string& why, std::string notice = "") {
  self->state.answers[i] = answer::cannot;
  self->state.reasons[i] = why;
  self->state.notices[i] = std::move(notice);
}

void passed_over(any_ptr self, std::size_t end) {
  auto& st = self->state;
  for (std::size_t j = 0; j < end; ++j)
    if (!st.notices[j].empty())
      st.told.push_back(std::exchange(st.notices[j], ""));
}

void copy_from(any_ptr self, uint32_t i);

// The next substituter to copy from, if one may be taken now; the answer,
// if none is left.
void choose(any_ptr self) {
  auto& st = self->state;
  if (st.copying)
    return;
  bool waiting = false;
  for (uint32_t i = 0; i < st.answers.size(); ++i) {
    if (st.answers[i] == answer::has_it && (!waiting || st.grace_over)) {
      passed_over(self, i);
      return copy_from(self, i);
    }
    waiting = waiting || st.answers[i] == answer::pending;
  }
  if (waiting)
    return;
  passed_over(self, st.answers.size());
  std::string reasons;
  for (auto& r : st.reasons)
    if (!r.empty())
      reasons += "\n  " + r;
  answer_with(self, {st.a_copy_failed ? substitute_outcome::failed : substitute_outcome::absent, reasons});
}

void copy_from(any_ptr self, uint32_t i) {
  auto& st = self->state;
  st.copying = true;
  st.answers[i] = answer::tried;
  self->request(st.pool, copy_timeout, subst_atom::value, st.path, i, st.repair)
      .then(
          [=](substitute_outcome& o) {
            if (o.kind == substitute_outcome::substituted)
              return answer_with(self, std::move(o));
            // A repair's try, or one that changed its mind since the probe.
            self->state.copying = false;
            cannot(self, i, o.message, o.warns() ? "warning: " + o.message : "");
            choose(self);
          },
          [=](caf::error& e) {
            auto& now = self->state;
            now.copying = false;
            now.a_copy_failed = true;
            cannot(self, i, error_text(e), "error: " + error_text(e));
            choose(self);
          });
}

void ask_every_substituter(any_ptr self) {
  auto& st = self->state;
  self->delayed_send(self, priority_grace, grace_atom::value);
  for (uint32_t i = 0; i < st.answers.size(); ++i)
    self->request(st.pool, probe_timeout, probe_atom::value, st.path, i)
        .then(
            [=](const substitute_outcome& o) {
              if (o.kind == substitute_outcome::available)
                self->state.answers[i] = answer::has_it;
              else
                cannot(self, i, o.message, o.warns() ? "warning: " + o.message : "");
              choose(self);
            },
            [=](caf::error& e) {
              cannot(self, i, error_text(e), "error: " + error_text(e));
              choose(self);
            });
}

any_impl::behavior_type substitute_any(any_ptr self, one_substituter_actor pool, uint32_t substituters) {
  self->state.pool = std::move(pool);
  self->state.answers.assign(substituters, answer::pending);
  self->state.reasons.resize(substituters);
  self->state.notices.resize(substituters);
  return {
      [=](subst_any_atom, const std::string& path, bool repair) -> caf::typed_response_promise<substitute_outcome> {
        auto& st = self->state;
        st.promise = self->make_response_promise<substitute_outcome>();
        st.path = path;
        st.repair = repair;
        if (repair || st.answers.size() == 1) {
          std::fill(st.answers.begin(), st.answers.end(), answer::has_it);
          st.grace_over = true;
        } else {
          ask_every_substituter(self);
        }
        auto rp = st.promise;
        choose(self); // with no substituter at all, the answer is now
        return rp;
      },
      [=](grace_atom) {
        self->state.grace_over = true;
        choose(self);
      },
  };
}

} // namespace

any_actor spawn_substitute_any(caf::local_actor* parent, one_substituter_actor pool, uint32_t substituters) {
  return parent->spawn(substitute_any, std::move(pool), substituters);
}

} // namespace kiln
