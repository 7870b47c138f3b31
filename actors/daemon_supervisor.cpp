// kilnd's supervisor: the root of the daemon's actors. It watches the
// session actors (one per connection, each on a thread of its own, so a
// slow or stuck client blocks only its session, never a CAF scheduler
// thread), owns their connections' descriptors, and stops them all on
// SIGTERM: first it shuts their reading, so an idle session ends and a
// build under way finishes and is answered (draining), then, at the drain's
// deadline, it hangs up on them all and their builds are cancelled. The
// listener (daemon_server.cpp) spawns the sessions and reports each here.
#include "actors/actors.hpp"

#include <atomic>
#include <map>
#include <sys/socket.h>
#include <unistd.h>

namespace kiln {

namespace {

struct supervisor_state {
  std::map<caf::actor_addr, int> sessions; // and their descriptors
  bool stopping = false;
  std::atomic<int>* phase = nullptr; // the sessions' view of the stop (daemon_context::stopping)
  static inline const char* name = "kilnd-supervisor";
};

using supervisor_ptr = supervisor_actor::stateful_pointer<supervisor_state>;

void end_when_alone(supervisor_ptr self) {
  if (self->state.stopping && self->state.sessions.empty())
    self->quit();
}

// Phase 1: reading shut (sessions end after what they are doing); phase 2:
// hung up on, their builds cancelled.
void shut(supervisor_ptr self, int fd) {
  ::shutdown(fd, *self->state.phase == 1 ? SHUT_RD : SHUT_RDWR);
}

void enter(supervisor_ptr self, int phase, std::chrono::seconds until_next) {
  *self->state.phase = phase;
  for (auto& [session, fd] : self->state.sessions)
    shut(self, fd);
  self->delayed_send(self, until_next, deadline_atom::value);
}

supervisor_actor::behavior_type supervisor(supervisor_ptr self, supervisor_timing timing, std::atomic<int>* phase) {
  self->state.phase = phase;
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& sessions = self->state.sessions;
    auto it = sessions.find(dm.source);
    if (it == sessions.end())
      return;
    ::close(it->second);
    sessions.erase(it);
    end_when_alone(self);
  });
  return {
      [=](session_atom, caf::actor session, int fd) {
        // A session that has ended already is reported at once (monitor).
        self->monitor(session);
        self->state.sessions.emplace(session.address(), fd);
        if (self->state.stopping)
          shut(self, fd);
      },
      [=](stop_atom) {
        if (self->state.stopping)
          return;
        self->state.stopping = true;
        if (timing.cancel_builds)
          enter(self, 2, timing.grace);
        else
          enter(self, 1, timing.drain);
        end_when_alone(self);
      },
      [=](deadline_atom) {
        if (*self->state.phase == 1)
          return enter(self, 2, timing.grace);
        self->quit(caf::exit_reason::user_shutdown);
      },
  };
}

} // namespace

supervisor_actor spawn_supervisor(caf::actor_system& sys, supervisor_timing timing, std::atomic<int>* phase) {
  return sys.spawn(supervisor, timing, phase);
}

} // namespace kiln
