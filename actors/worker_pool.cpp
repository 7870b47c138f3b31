// kilnd's worker processes (design.md, "Process model"): `workers`
// kiln-worker processes, each linked by BASP over an inherited socketpair
// (../shared/spec/caf-0.17-worker-links.md) with heartbeats both ways, so a
// worker that dies or stops answering is noticed within link_timeout. The
// pool leases builders and substituters on live workers; a lost worker is killed, reaped and
// started again with exponential backoff, and one that fails at every
// start is given up on and reported. A worker is untrusted: the one kilnd
// actor it is given is its front (worker_front.hpp), which lets through
// only the log lines of the rounds leased on it. A worker's builders serve
// round after round: the pool keeps those idle and takes them back from
// the goals. (Over 500 lines: the workers' lives and the leases on them
// share one state, which a split would have to put in a header of its
// own; the next change here should make that cut.)
#include "actors/actors.hpp"
#include "actors/worker.hpp"
#include "actors/worker_front.hpp"
#include "sandbox/builder_process.hpp"
#include "sandbox/cgroup.hpp"
#include "store/local/temp_roots.hpp"

#include "caf/io/all.hpp"
#include "caf/io/basp_broker.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <iostream>
#include <thread>

extern char** environ;

namespace kiln {

namespace {

using std::chrono::milliseconds;
using clock_type = std::chrono::steady_clock;

constexpr uint16_t link_port = 1;                 // as in worker_main.cpp
constexpr auto handshake_timeout = std::chrono::seconds(5);
constexpr auto spawn_timeout = std::chrono::seconds(5);
// A worker lost before its handshake, or this soon after, failed its start;
// one lost later had started well (it was killed, or crashed on a build).
constexpr auto started_well = std::chrono::seconds(1);
constexpr uint32_t give_up_after = 5; // failed starts in a row
constexpr milliseconds first_backoff{100}, last_backoff{30000};

struct worker_slot {
  pid_t pid = -1;
  worker_actor handle;
  worker_front_actor front;
  std::shared_ptr<lease_table> leases = std::make_shared<lease_table>();
  uint32_t rounds = 0; // leased now
  uint32_t substituters = 0; // of runs' substituter pools, alive now
  // Builders on it serving no round: a lease takes one without a round trip
  // to the worker (and, as kilnd has its proxy already, without a message
  // to watch it). One is spawned ahead when none is left.
  std::vector<builder_actor> idle;
  bool asking_spare = false;
  bool starting = false, alive = false, given_up = false;
  std::string trouble; // why a starting worker was killed (told once it is reaped)
  uint32_t failures = 0; // failed starts in a row
  clock_type::time_point alive_since;
};

struct waiting_lease {
  caf::typed_response_promise<builder_actor, worker_front_actor, uint64_t> promise;
  std::string drv;
  logger_actor logger;
  caf::actor_addr goal; // gives it back, or ends holding it
  uint64_t lease = 0;   // its number, once it has a worker
};

// A builder leased for a round, until the goal gives it back.
struct leased_builder {
  std::size_t slot;
  std::string drv;
  builder_actor builder;
  caf::actor_addr goal;
};

// More idle builders than this on one worker are ended when given back.
constexpr std::size_t max_idle_builders = 64;

struct waiting_substituter {
  caf::typed_response_promise<one_substituter_actor> promise;
  std::string root;
  build_options options;
};

struct pool_state {
  worker_options options;
  caf::actor basp;
  std::vector<worker_slot> slots;
  std::deque<waiting_lease> waiting;
  std::deque<waiting_substituter> waiting_substituters;
  std::map<caf::actor_addr, std::size_t> builders; // every builder on a worker, watched -> slot
  std::map<uint64_t, leased_builder> leased;       // by lease number
  uint64_t leases = 0;                             // handed out so far (numbers them)
  std::map<caf::actor_addr, std::size_t> substituters;                     // -> slot
  static inline const char* name = "worker_pool";
  ~pool_state() {
    for (auto& s : slots)
      if (s.pid > 0)
        ::kill(s.pid, SIGKILL); // its builds die with it (PR_SET_PDEATHSIG)
  }
};

using pool_ptr = worker_pool_actor::stateful_pointer<pool_state>;

// The slot a watched builder or substituter belongs to.
std::size_t slot_of(const leased_builder& lease) { return lease.slot; }
std::size_t slot_of(std::size_t slot) { return slot; }

void start_worker(pool_ptr self, std::size_t i);
void serve_waiting(pool_ptr self);
void ask_spare(pool_ptr self, std::size_t i);

void say(const std::string& line) { std::cerr << "kilnd: " << line << std::endl; }

bool all_given_up(const pool_state& st) {
  return std::all_of(st.slots.begin(), st.slots.end(), [](auto& x) { return x.given_up; });
}

caf::error no_workers() {
  return caf::make_error(engine_errc::no_workers,
                         std::string("no worker process is running (each failed at every start)"));
}

std::string worker_name(pool_ptr self, std::size_t i) {
  return "worker " + std::to_string(i) + " (pid " + std::to_string(self->state.slots[i].pid) + ")";
}

// The worker is gone or unusable: killed (it may only be stopped), its
// rounds' builders go down with its link, and it starts again after its
// backoff, unless it never lasts.
// `reaped`: the process has ended and been waited for (its pid is free).
void lost(pool_ptr self, std::size_t i, const std::string& why, bool reaped = false) {
  auto& st = self->state;
  auto& s = st.slots[i];
  std::string name = worker_name(self, i);
  pid_t pid = s.pid;
  if (reaped)
    s.pid = -1;
  if (!s.starting && !s.alive)
    return;
  if (!reaped && pid > 0)
    ::kill(pid, SIGKILL);
  // Its builds die with it (their parent-death signal, a sandbox's PID
  // namespace), and what they started, with their control groups.
  if (pid > 0)
    sandbox::kill_build_groups_of(pid);
  if (s.front)
    self->send_exit(s.front, caf::exit_reason::kill);
  bool failed_start = !s.alive || clock_type::now() - s.alive_since < started_well;
  s.front = nullptr;
  s.handle = nullptr;
  s.starting = s.alive = false;
  s.rounds = 0;
  s.substituters = 0;
  s.idle.clear();
  s.asking_spare = false;
  s.leases = std::make_shared<lease_table>();
  // Its builders' and substituters' down messages may come after a new
  // worker has taken the slot: they must not count against the new one.
  auto of_this_slot = [i](auto& entries) {
    for (auto it = entries.begin(); it != entries.end();)
      it = slot_of(it->second) == i ? entries.erase(it) : std::next(it);
  };
  of_this_slot(st.builders);
  of_this_slot(st.leased);
  of_this_slot(st.substituters);
  s.failures = failed_start ? s.failures + 1 : 0;
  if (s.failures >= give_up_after) {
    s.given_up = true;
    say(name + " " + why + "; it failed " + std::to_string(s.failures) +
        " starts in a row and is not started again");
    if (all_given_up(st)) {
      say("no worker process is left: builds fail until kilnd is restarted");
      for (auto& w : st.waiting)
        w.promise.deliver(no_workers());
      st.waiting.clear();
      for (auto& w : st.waiting_substituters)
        w.promise.deliver(no_workers());
      st.waiting_substituters.clear();
    }
    return;
  }
  uint32_t doublings = s.failures ? s.failures - 1 : 0;
  auto backoff = std::min(last_backoff, first_backoff * (1u << std::min<uint32_t>(doublings, 16)));
  say(name + " " + why + "; starting it again in " + std::to_string(backoff.count()) + " ms");
  self->delayed_send(self, backoff, restart_atom::value, static_cast<uint32_t>(i));
}

// A starting worker that failed its handshake is killed; it counts as lost
// once reaped, so the report says how it ended (a crash's exit status).
void abandon(pool_ptr self, std::size_t i, pid_t pid, const std::string& why) {
  auto& s = self->state.slots[i];
  if (s.pid != pid || !s.starting)
    return;
  s.trouble = why;
  ::kill(pid, SIGKILL);
}

void start_worker(pool_ptr self, std::size_t i) {
  auto& st = self->state;
  auto& s = st.slots[i];
  s.starting = true;
  s.trouble.clear();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    s.pid = -1;
    return lost(self, i, std::string("could not be linked: socketpair: ") + std::strerror(errno));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sv[1], 3); // clears FD_CLOEXEC on 3 (sv[1] is never 3 here: fds 0-5 are taken)
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);   // kilnd blocks its signals in every thread
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  std::vector<std::string> args{st.options.program, "--link-fd", "3", "--build-dir", st.options.build_dir_parent};
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int err = ::posix_spawn(&pid, st.options.program.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(sv[1]);
  if (err != 0) {
    ::close(sv[0]);
    s.pid = -1;
    return lost(self, i, "could not be started: " + st.options.program + ": " + std::strerror(err));
  }
  s.pid = pid;
  // Reaped on a thread of its own (waitpid blocks); a killed worker's
  // substituters leave their temp-roots files behind: removed here.
  std::thread([pid, pool = worker_pool_actor(self), temproots = st.options.temproots_dir] {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!temproots.empty()) {
      try {
        remove_stale_temp_roots(temproots, pid);
      } catch (const std::exception& e) {
        say(std::string("removing a lost worker's temp roots: ") + e.what());
      }
    }
    caf::anon_send(pool, reaped_atom::value, static_cast<int32_t>(pid), static_cast<int32_t>(status));
  }).detach();
  auto& mm = self->system().middleman();
  self->request(st.basp, handshake_timeout, caf::connect_atom::value, mm.backend().new_scribe(sv[0]), link_port)
      .then(
          [=](caf::node_id&, caf::strong_actor_ptr& p, std::set<std::string>& sigs) {
            auto& slot = self->state.slots[i];
            if (slot.pid != pid || !slot.starting)
              return;
            if (!p || !self->system().assignable<worker_actor>(sigs))
              return abandon(self, i, pid, "it answered the handshake with another interface");
            slot.handle = caf::actor_cast<worker_actor>(p);
            slot.front = spawn_worker_front(self, slot.leases, caf::actor_cast<caf::actor>(self));
            self->monitor(slot.handle);
            self->request(slot.handle, handshake_timeout, hello_atom::value, caf::actor_cast<logger_actor>(slot.front))
                .then(
                    [=](int32_t) {
                      auto& w = self->state.slots[i];
                      if (w.pid != pid || !w.starting)
                        return;
                      w.starting = false;
                      w.alive = true;
                      w.alive_since = clock_type::now();
                      ask_spare(self, i);
                      serve_waiting(self);
                    },
                    [=](caf::error& e) {
                      abandon(self, i, pid, "it did not answer hello: " + self->system().render(e));
                    });
          },
          [=](caf::error& e) { abandon(self, i, pid, "it failed the handshake: " + self->system().render(e)); });
}

// A builder worker i spawned: watched for as long as it lives.
void watch_builder(pool_ptr self, std::size_t i, const builder_actor& b) {
  self->monitor(b);
  self->state.builders[b.address()] = i;
}

// The next spare builder of worker i, asked for in the background.
void ask_spare(pool_ptr self, std::size_t i) {
  auto& s = self->state.slots[i];
  if (!s.alive || !s.idle.empty() || s.asking_spare)
    return;
  s.asking_spare = true;
  pid_t pid = s.pid;
  self->request(s.handle, spawn_timeout, spawn_atom::value)
      .then(
          [=](builder_actor& b) {
            auto& slot = self->state.slots[i];
            if (slot.pid != pid || !slot.alive) {
              self->send_exit(b, caf::exit_reason::user_shutdown);
              return;
            }
            slot.asking_spare = false;
            watch_builder(self, i, b);
            slot.idle.push_back(b);
          },
          [=](caf::error&) {
            auto& slot = self->state.slots[i];
            if (slot.pid == pid)
              slot.asking_spare = false; // leases ask directly until the next try
          });
}

// Worker i's builder for a lease, told of; the goal is watched (one that
// ends holding it gives it back).
void lease_to(pool_ptr self, std::size_t i, builder_actor b, waiting_lease& w) {
  self->state.leased[w.lease] = {i, w.drv, b, w.goal};
  w.promise.deliver(b, self->state.slots[i].front, w.lease);
}

// The round of `lease` is over: its log's lease entry goes (through the
// front, behind the lines the builder sent), and its builder serves
// another round, or ends (not `reusable`, or its worker is gone).
void give_back(pool_ptr self, uint64_t lease, bool reusable) {
  auto& st = self->state;
  auto it = st.leased.find(lease);
  if (it == st.leased.end())
    return;
  auto l = std::move(it->second);
  st.leased.erase(it);
  auto& s = st.slots[l.slot];
  if (s.rounds > 0)
    --s.rounds;
  if (s.front)
    self->send(s.front, forget_atom::value, l.drv, lease);
  auto watched = st.builders.find(l.builder.address());
  if (reusable && s.alive && watched != st.builders.end() && watched->second == l.slot &&
      s.idle.size() < max_idle_builders)
    s.idle.push_back(l.builder);
  else
    self->send_exit(l.builder, caf::exit_reason::user_shutdown); // it releases what it holds
}

// The live worker with the least of `count`, if any.
std::optional<std::size_t> least_busy(const pool_state& st, uint32_t worker_slot::*count) {
  std::optional<std::size_t> best;
  for (std::size_t i = 0; i < st.slots.size(); ++i)
    if (st.slots[i].alive && (!best || st.slots[i].*count < st.slots[*best].*count))
      best = i;
  return best;
}

// No live worker for `w`: it waits for one, or fails if none will come.
template <class Waiting>
void wait_for_worker(pool_state& st, Waiting w, std::deque<Waiting>& queue) {
  if (all_given_up(st))
    w.promise.deliver(no_workers());
  else
    queue.push_back(std::move(w));
}

// A round's builder on the live worker with the fewest rounds.
void hand_out(pool_ptr self, waiting_lease w) {
  auto& st = self->state;
  auto best = least_busy(st, &worker_slot::rounds);
  if (!best)
    return wait_for_worker(st, std::move(w), st.waiting);
  std::size_t i = *best;
  auto& s = st.slots[i];
  w.lease = ++st.leases;
  s.leases->put(w.drv, {w.logger, w.lease});
  ++s.rounds;
  if (!s.idle.empty()) {
    auto b = s.idle.back();
    s.idle.pop_back();
    lease_to(self, i, b, w);
    return ask_spare(self, i);
  }
  pid_t pid = s.pid;
  self->request(s.handle, spawn_timeout, spawn_atom::value)
      .then(
          [=](builder_actor& b) mutable {
            auto& slot = self->state.slots[i];
            if (slot.pid != pid || !slot.alive) {
              w.promise.deliver(caf::make_error(engine_errc::worker_lost, worker_name(self, i) + " was lost"));
              return;
            }
            watch_builder(self, i, b);
            lease_to(self, i, b, w);
          },
          [=](caf::error& e) mutable {
            auto& slot = self->state.slots[i];
            if (slot.pid == pid && slot.rounds > 0) {
              --slot.rounds;
              slot.leases->drop(w.drv, w.lease);
            }
            w.promise.deliver(caf::make_error(engine_errc::worker_lost,
                                              worker_name(self, i) + " gave no builder: " + self->system().render(e)));
          });
}

// A substituter for a run's pool, on the live worker with fewest.
void hand_out_substituter(pool_ptr self, waiting_substituter w) {
  auto& st = self->state;
  auto best = least_busy(st, &worker_slot::substituters);
  if (!best)
    return wait_for_worker(st, std::move(w), st.waiting_substituters);
  std::size_t i = *best;
  auto& s = st.slots[i];
  ++s.substituters;
  pid_t pid = s.pid;
  auto promise = w.promise;
  self->request(s.handle, spawn_timeout, spawn_atom::value, w.root, w.options)
      .then(
          [=](one_substituter_actor& sub) mutable {
            auto& slot = self->state.slots[i];
            if (slot.pid != pid || !slot.alive) {
              promise.deliver(caf::make_error(engine_errc::worker_lost, worker_name(self, i) + " was lost"));
              return;
            }
            self->monitor(sub);
            self->state.substituters[sub.address()] = i;
            promise.deliver(sub);
          },
          [=](caf::error& e) mutable {
            auto& slot = self->state.slots[i];
            if (slot.pid == pid && slot.substituters > 0)
              --slot.substituters;
            if (e.category() != caf::atom("kiln"))
              e = caf::make_error(engine_errc::worker_lost,
                                  worker_name(self, i) + " gave no substituter: " + self->system().render(e));
            promise.deliver(std::move(e));
          });
}

void serve_waiting(pool_ptr self) {
  auto waiting = std::move(self->state.waiting);
  self->state.waiting.clear();
  for (auto& w : waiting)
    hand_out(self, std::move(w));
  auto substituters = std::move(self->state.waiting_substituters);
  self->state.waiting_substituters.clear();
  for (auto& w : substituters)
    hand_out_substituter(self, std::move(w));
}

worker_pool_actor::behavior_type worker_pool(pool_ptr self, worker_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  st.basp = self->system().middleman().named_broker<caf::io::basp_broker>(caf::atom("BASP"));
  st.slots.resize(std::max<uint32_t>(1, st.options.count));
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& state = self->state;
    if (auto b = state.builders.find(dm.source); b != state.builders.end()) {
      auto& idle = state.slots[b->second].idle;
      idle.erase(std::remove_if(idle.begin(), idle.end(), [&](auto& x) { return x.address() == dm.source; }),
                 idle.end());
      state.builders.erase(b);
      std::vector<uint64_t> its;
      for (auto& [lease, l] : state.leased)
        if (l.builder.address() == dm.source)
          its.push_back(lease);
      for (auto lease : its)
        give_back(self, lease, false);
      return;
    }
    // A goal that ended holding a lease.
    std::vector<uint64_t> held;
    for (auto& [lease, l] : state.leased)
      if (l.goal == dm.source)
        held.push_back(lease);
    for (auto lease : held)
      give_back(self, lease, false);
    if (!held.empty())
      return;
    if (auto sub = state.substituters.find(dm.source); sub != state.substituters.end()) {
      auto& s = state.slots[sub->second];
      if (s.substituters > 0)
        --s.substituters;
      state.substituters.erase(sub);
      return;
    }
    for (std::size_t i = 0; i < state.slots.size(); ++i)
      if (state.slots[i].handle && state.slots[i].handle.address() == dm.source)
        return lost(self, i, "stopped answering (" + self->system().render(dm.reason) + ")");
  });
  for (std::size_t i = 0; i < st.slots.size(); ++i)
    start_worker(self, i);
  return {
      [=](lease_atom, std::string& drv, logger_actor& logger)
          -> caf::typed_response_promise<builder_actor, worker_front_actor, uint64_t> {
        auto rp = self->make_response_promise<builder_actor, worker_front_actor, uint64_t>();
        auto goal = caf::actor_cast<caf::actor>(self->current_sender());
        if (goal)
          self->monitor(goal);
        hand_out(self, {rp, std::move(drv), std::move(logger), goal.address()});
        return rp;
      },
      [=](release_atom, uint64_t lease, bool reusable) { give_back(self, lease, reusable); },
      [=](lease_atom, std::string& root, build_options& options) -> caf::typed_response_promise<one_substituter_actor> {
        auto rp = self->make_response_promise<one_substituter_actor>();
        hand_out_substituter(self, {rp, std::move(root), std::move(options)});
        return rp;
      },
      [=](restart_atom, uint32_t i) {
        if (i < self->state.slots.size() && !self->state.slots[i].given_up)
          start_worker(self, i);
      },
      [=](reaped_atom, int32_t pid, int32_t status) {
        auto& slots = self->state.slots;
        for (std::size_t i = 0; i < slots.size(); ++i)
          if (slots[i].pid == pid) {
            std::string why = "ended: " + sandbox::describe_wait_status(status);
            if (!slots[i].trouble.empty())
              why += " (" + slots[i].trouble + ")";
            lost(self, i, why, true);
          }
      },
  };
}

} // namespace

worker_pool_actor spawn_worker_pool(caf::actor_system& sys, worker_options options) {
  return sys.spawn(worker_pool, std::move(options));
}

} // namespace kiln
