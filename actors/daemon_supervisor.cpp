// kilnd's supervisor: the root of the daemon's actors. It watches the
// session actors (one per connection, each on a thread of its own, so a
// slow or stuck client blocks only its session, never a CAF scheduler
// thread), owns their connections' descriptors, and stops them all on
// SIGTERM. The listener (daemon_server.cpp) spawns the sessions and
// reports each one here.
#include "actors/actors.hpp"

#include <map>
#include <sys/socket.h>
#include <unistd.h>

namespace kiln {

namespace {

struct supervisor_state {
  std::map<caf::actor_addr, int> sessions; // and their descriptors
  bool stopping = false;
  static inline const char* name = "kilnd-supervisor";
};

using supervisor_ptr = supervisor_actor::stateful_pointer<supervisor_state>;

void end_when_alone(supervisor_ptr self) {
  if (self->state.stopping && self->state.sessions.empty())
    self->quit();
}

supervisor_actor::behavior_type supervisor(supervisor_ptr self, std::chrono::seconds grace) {
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
          ::shutdown(fd, SHUT_RDWR);
      },
      [=](stop_atom) {
        self->state.stopping = true;
        for (auto& [session, fd] : self->state.sessions)
          ::shutdown(fd, SHUT_RDWR); // its reads end; its builds are cancelled
        end_when_alone(self);
        self->delayed_send(self, grace, deadline_atom::value);
      },
      [=](deadline_atom) { self->quit(caf::exit_reason::user_shutdown); },
  };
}

} // namespace

supervisor_actor spawn_supervisor(caf::actor_system& sys, std::chrono::seconds grace) {
  return sys.spawn(supervisor, grace);
}

} // namespace kiln
