// kiln-worker's actors: the front actor kilnd talks to, and the builders it
// spawns for kilnd's rounds on this process's build_host. The worker is
// given one kilnd actor (its front in kilnd, a logger) and watches it: when
// kilnd goes, every build here is killed and the process ends.
#include "actors/worker.hpp"

#include "actors/actors.hpp"
#include "actors/build_host.hpp"

#include "caf/io/all.hpp"
#include "caf/io/basp_broker.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <vector>

namespace kiln {

namespace {

// The BASP port number under which the front is published on the inherited
// socket: a key in BASP's table only (no socket listens).
constexpr uint16_t link_port = 1;
// kilnd says hello right after the handshake; a worker that hears nothing
// for this long is an orphan (kilnd died while starting it).
constexpr auto hello_deadline = std::chrono::seconds(10);

using deadline_atom_t = caf::atom_constant<caf::atom("nohello")>;

struct worker_config : caf::actor_system_config {
  worker_config() {
    kiln::add_message_types(*this);
    load<caf::io::middleman>();
    set("middleman.heartbeat-interval", caf::timespan{link_heartbeat});
    set("middleman.connection-timeout", caf::timespan{link_timeout});
    set("scheduler.policy", caf::atom("sharing"));
  }
};

struct front_state {
  logger_actor kilnd;
  std::vector<builder_actor> builders;
  static inline const char* name = "worker";
};

using front_impl = worker_actor::extend<caf::reacts_to<deadline_atom_t>>;

front_impl::behavior_type front(front_impl::stateful_pointer<front_state> self, std::shared_ptr<build_host> host) {
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source == st.kilnd.address()) {
      // kilnd is gone: nothing built here can reach it any more.
      for (auto& b : st.builders)
        self->send_exit(b, caf::exit_reason::kill);
      self->quit(caf::exit_reason::user_shutdown);
      return;
    }
    auto& v = st.builders;
    v.erase(std::remove_if(v.begin(), v.end(), [&](auto& b) { return b.address() == dm.source; }), v.end());
  });
  self->delayed_send(self, hello_deadline, deadline_atom_t::value);
  return {
      [=](hello_atom, logger_actor kilnd) -> caf::result<int32_t> {
        auto& st = self->state;
        if (st.kilnd || !kilnd)
          return caf::make_error(caf::sec::unexpected_message);
        st.kilnd = std::move(kilnd);
        self->monitor(st.kilnd);
        return static_cast<int32_t>(::getpid());
      },
      [=](spawn_atom) -> caf::result<builder_actor> {
        auto& st = self->state;
        if (!st.kilnd)
          return caf::make_error(caf::sec::unexpected_message);
        auto b = spawn_builder(self->system(), st.kilnd, host);
        self->monitor(b);
        st.builders.push_back(b);
        return b;
      },
      [=](deadline_atom_t) {
        if (!self->state.kilnd)
          self->quit(caf::exit_reason::user_shutdown);
      },
  };
}

} // namespace

int run_worker(int link_fd, const std::string& build_dir_parent) {
  // Builds must not inherit the link: one could speak BASP to kilnd.
  if (::fcntl(link_fd, F_SETFD, FD_CLOEXEC) != 0) {
    std::cerr << "kiln-worker: fd " << link_fd << " is not open: start me from kilnd\n";
    return 2;
  }
  // kilnd decides when builds stop: a Ctrl-C on its terminal reaches it,
  // not its workers directly.
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGPIPE, SIG_IGN);
  worker_config cfg;
  caf::actor_system sys{cfg};
  auto host = std::make_shared<build_host>(build_dir_parent);
  auto me = sys.spawn(front, host);
  auto& mm = sys.middleman();
  auto basp = mm.named_broker<caf::io::basp_broker>(caf::atom("BASP"));
  caf::anon_send(basp, caf::publish_atom::value, mm.backend().new_scribe(link_fd), link_port,
                 caf::actor_cast<caf::strong_actor_ptr>(me), sys.message_types<worker_actor>());
  {
    caf::scoped_actor self{sys};
    self->monitor(me);
    self->receive([](caf::down_msg&) {});
  }
  // The builders were told to die (their processes killed, directories
  // removed); give them a moment, then go without waiting for the network.
  sys.await_actors_before_shutdown(false);
  for (int i = 0; i < 50 && sys.registry().running() > 0; ++i)
    ::usleep(20000);
  host.reset(); // the last reference once the builders are gone: its private directory goes
  std::cout.flush();
  ::_exit(0);
}

} // namespace kiln
