// kiln-worker's actors: the front actor kilnd talks to, and the builders it
// spawns for kilnd's rounds on this process's build_host and the
// substituters it spawns for kilnd's runs (each on its own connection to
// the store, rooting what it copies in temp roots of its own). The worker is
// given one kilnd actor (its front in kilnd, a logger) and watches it: when
// kilnd goes, every build here is killed and the process ends.
#include "actors/worker.hpp"

#include "actors/actors.hpp"
#include "actors/build_host.hpp"
#include "sandbox/worker_privileges.hpp"
#include "store/local/temp_roots.hpp"

#include "caf/io/all.hpp"
#include "caf/io/basp_broker.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <map>
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
    load_worker_link(*this);
    set_scheduler(*this);
  }
};

struct front_state {
  logger_actor kilnd;
  std::vector<caf::actor> children; // builders and substituters
  uint64_t substituters = 0;        // spawned so far (names their temp roots)
  // A substituter's flag: set, its downloads stop (it may be blocked in
  // one, deaf to messages until it returns).
  std::map<caf::actor_addr, std::shared_ptr<std::atomic<bool>>> cancels;
  static inline const char* name = "worker";
};

using front_impl = worker_actor::extend<caf::reacts_to<deadline_atom_t>>;

front_impl::behavior_type front(front_impl::stateful_pointer<front_state> self, std::shared_ptr<build_host> host) {
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source == st.kilnd.address()) {
      // kilnd is gone: nothing built here can reach it any more.
      for (auto& [_, flag] : st.cancels)
        *flag = true;
      for (auto& c : st.children)
        self->send_exit(c, caf::exit_reason::kill);
      self->quit(caf::exit_reason::user_shutdown);
      return;
    }
    auto& v = st.children;
    v.erase(std::remove_if(v.begin(), v.end(), [&](auto& c) { return c.address() == dm.source; }), v.end());
    st.cancels.erase(dm.source);
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
        auto b = spawn_builder(self->system(), st.kilnd, host, true);
        self->monitor(b);
        st.children.push_back(caf::actor_cast<caf::actor>(b));
        return b;
      },
      [=](spawn_atom, const std::string& root, const build_options& options) -> caf::result<one_substituter_actor> {
        auto& st = self->state;
        if (!st.kilnd)
          return caf::make_error(caf::sec::unexpected_message);
        try {
          store_layout layout{root};
          auto roots = std::make_shared<temp_roots>(layout.state_dir(), std::string(default_store_dir),
                                                    "subst" + std::to_string(++st.substituters));
          auto cancelled = std::make_shared<std::atomic<bool>>(false);
          auto s = spawn_substituter(self->system(), layout, std::move(roots), options, cancelled);
          self->monitor(s);
          st.children.push_back(caf::actor_cast<caf::actor>(s));
          st.cancels[s.address()] = std::move(cancelled);
          return s;
        } catch (const std::exception& e) {
          return caf::make_error(engine_errc::store_failure, std::string(e.what()));
        }
      },
      [=](cancel_atom, const one_substituter_actor& s) {
        // Only kilnd's pool knows these handles; a stale one finds nothing.
        auto& st = self->state;
        if (auto it = st.cancels.find(s.address()); it != st.cancels.end()) {
          *it->second = true;
          self->send_exit(s, caf::exit_reason::user_shutdown);
        }
      },
      [=](deadline_atom_t) {
        if (!self->state.kilnd)
          self->quit(caf::exit_reason::user_shutdown);
      },
  };
}

} // namespace

void load_worker_link(caf::actor_system_config& cfg) {
  cfg.load<caf::io::middleman>();
  cfg.set("middleman.heartbeat-interval", caf::timespan{link_heartbeat});
  cfg.set("middleman.connection-timeout", caf::timespan{link_timeout});
  // Messages from the link are deserialized on the I/O thread that read
  // them, not handed to a BASP worker thread first: one thread wake-up
  // fewer a message (measured: a round's request and report each reach
  // their actor 60-120 µs sooner), and they reach their actors in the
  // order they came.
  cfg.set("middleman.workers", size_t{0});
}

int run_worker(int link_fd, const std::string& build_dir_parent) {
  // Builds must not inherit the link: one could speak BASP to kilnd.
  if (::fcntl(link_fd, F_SETFD, FD_CLOEXEC) != 0) {
    std::cerr << "kiln-worker: fd " << link_fd << " is not open: start me from kilnd\n";
    return 2;
  }
  // Before any thread starts (capabilities are each thread's own, and new
  // threads inherit them).
  try {
    sandbox::keep_only_worker_capabilities();
  } catch (const std::exception& e) {
    std::cerr << "kiln-worker: " << e.what() << "\n";
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
