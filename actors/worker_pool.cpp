// kilnd's worker processes (design.md, "Process model"): `workers`
// kiln-worker processes, each linked by BASP over an inherited socketpair
// (../shared/spec/caf-0.17-worker-links.md) with heartbeats both ways, so a
// worker that dies or stops answering is noticed within link_timeout. A
// lost worker is killed, reaped and started again with exponential
// backoff, and one that fails at every start is given up on and reported.
// A worker is untrusted: the one kilnd actor it is given is its front
// (worker_front.hpp), which lets through only the log lines of the rounds
// leased on it. The leases on live workers are in worker_leases.cpp.
#include "actors/worker.hpp"
#include "actors/worker_pool_state.hpp"
#include "actors/worker_registry.hpp"
#include "sandbox/builder_process.hpp"
#include "sandbox/cgroup.hpp"
#include "store/local/temp_roots.hpp"

#include "caf/io/all.hpp"
#include "caf/io/basp_broker.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>

extern char** environ;

namespace kiln::worker_pool_impl {

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

namespace {

using std::chrono::milliseconds;

constexpr uint16_t link_port = 1;                 // as in worker_main.cpp
constexpr auto handshake_timeout = std::chrono::seconds(5);
// A worker lost before its handshake, or this soon after, failed its start;
// one lost later had started well (it was killed, or crashed on a build).
constexpr auto started_well = std::chrono::seconds(1);
constexpr uint32_t give_up_after = 5; // failed starts in a row
constexpr milliseconds first_backoff{100}, last_backoff{30000};

// The slot a watched builder or substituter belongs to.
std::size_t slot_of(const leased_builder& lease) { return lease.slot; }
std::size_t slot_of(std::size_t slot) { return slot; }

void say(const std::string& line) { std::cerr << "kilnd: " << line << std::endl; }

void close_link(worker_slot& s) {
  if (s.link >= 0)
    ::close(s.link);
  s.link = -1;
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
  close_link(s);
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
  s.link = ::fcntl(sv[0], F_DUPFD_CLOEXEC, 0);
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
  worker_registry registry(st.options.registry_dir);
  registry.add(pid);
  // Reaped on a thread of its own (waitpid blocks); a killed worker's
  // substituters leave their temp-roots files behind: removed here.
  std::thread([pid, pool = worker_pool_actor(self), &sys = self->system(), temproots = st.options.temproots_dir,
               registry] {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    registry.remove(pid);
    if (!temproots.empty()) {
      try {
        remove_stale_temp_roots(temproots, pid);
      } catch (const std::exception& e) {
        say(std::string("removing a lost worker's temp roots: ") + e.what());
      }
    }
    caf::scoped_actor reaper{sys}; // the pool takes this only from here
    reaper->send(pool, reaped_atom::value, static_cast<int32_t>(pid), static_cast<int32_t>(status));
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
            slot.front = spawn_worker_front(self, slot.leases, caf::actor_cast<caf::actor>(self), slot.handle);
            self->monitor(slot.handle);
            self->monitor(slot.front); // a worker can end it (an exit message): the worker is then of no use
            self->request(slot.front, worker_request_timeout, hello_atom::value)
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


// Workers a killed kilnd left (stopped or wedged as it died) are killed
// before new ones start; their temp roots go with them.
void kill_orphans(const worker_options& options) {
  try {
    for (pid_t pid : worker_registry(options.registry_dir).kill_orphans()) {
      say("killed worker process " + std::to_string(pid) + ", left behind by a kilnd that is gone");
      if (!options.temproots_dir.empty())
        remove_stale_temp_roots(options.temproots_dir, pid);
    }
  } catch (const std::exception& e) {
    say("warning: looking for workers a killed kilnd left: " + std::string(e.what()));
  }
}

// The stop is answered once no worker is left, with how many were killed.
void answer_stop_if_done(pool_ptr self, uint32_t killed = 0) {
  auto& st = self->state;
  if (!st.stopping || st.stop_answered)
    return;
  if (std::any_of(st.slots.begin(), st.slots.end(), [](auto& s) { return s.pid > 0; }) && !killed)
    return;
  st.stop_answered = true;
  st.stopped.deliver(killed);
}

// kilnd is stopping: each worker's link is cut, as its ending would cut it,
// so the worker kills its builds, removes their directories and exits. A
// stopped worker is resumed first: it must run to hear that.
caf::result<uint32_t> stop(pool_ptr self) {
  auto& st = self->state;
  if (st.stopping)
    return caf::make_error(engine_errc::no_workers, std::string("the workers are being stopped already"));
  st.stopping = true;
  auto refuse = [](auto& queue) {
    for (auto& w : queue)
      w.promise.deliver(caf::make_error(engine_errc::no_workers, std::string("kilnd is stopping")));
    queue.clear();
  };
  refuse(st.waiting);
  refuse(st.waiting_substituters);
  for (auto& s : st.slots) {
    if (s.pid > 0)
      ::kill(s.pid, SIGCONT);
    if (s.link >= 0)
      ::shutdown(s.link, SHUT_RDWR);
  }
  st.stopped = self->make_response_promise<uint32_t>();
  self->delayed_send(self, worker_stop_deadline, deadline_atom::value);
  answer_stop_if_done(self);
  return st.stopped;
}

// Workers still there at the stop's deadline are killed, with their builds.
void stop_deadline(pool_ptr self) {
  auto& st = self->state;
  if (!st.stopping || st.stop_answered)
    return;
  uint32_t killed = 0;
  for (std::size_t i = 0; i < st.slots.size(); ++i) {
    pid_t pid = st.slots[i].pid;
    if (pid <= 0)
      continue;
    ::kill(pid, SIGKILL);
    sandbox::kill_build_groups_of(pid);
    say(worker_name(self, i) + " had not ended " + std::to_string(worker_stop_deadline.count()) +
        " s after kilnd's stop: killed, with its builds");
    ++killed;
  }
  answer_stop_if_done(self, killed);
}

worker_pool_actor::behavior_type worker_pool(pool_ptr self, worker_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  st.basp = self->system().middleman().named_broker<caf::io::basp_broker>(caf::atom("BASP"));
  st.slots.resize(std::max<uint32_t>(1, st.options.count));
  kill_orphans(st.options);
  self->set_down_handler([=](caf::down_msg& dm) {
    if (lease_holder_down(self, dm))
      return;
    auto& state = self->state;
    if (state.stopping)
      return; // their links were cut on purpose
    for (std::size_t i = 0; i < state.slots.size(); ++i)
      if (state.slots[i].front && state.slots[i].front.address() == dm.source)
        return lost(self, i, "lost its front in kilnd (" + self->system().render(dm.reason) + ")");
    for (std::size_t i = 0; i < state.slots.size(); ++i)
      if (state.slots[i].handle && state.slots[i].handle.address() == dm.source)
        return lost(self, i, "stopped answering (" + self->system().render(dm.reason) + ")");
  });
  for (std::size_t i = 0; i < st.slots.size(); ++i)
    start_worker(self, i);
  return {
      [=](lease_atom, std::string& drv, logger_actor& logger)
          -> caf::result<builder_actor, worker_front_actor, uint64_t> {
        if (!sent_from_here(self))
          return caf::make_error(caf::sec::unexpected_message);
        auto rp = self->make_response_promise<builder_actor, worker_front_actor, uint64_t>();
        auto goal = caf::actor_cast<caf::actor>(self->current_sender());
        if (goal)
          self->monitor(goal);
        hand_out(self, {rp, std::move(drv), std::move(logger), goal.address()});
        return rp;
      },
      [=](release_atom, uint64_t lease, bool reusable) {
        if (sent_from_here(self))
          give_back(self, lease, reusable);
      },
      [=](lease_atom, std::string& root, build_options& build)
          -> caf::result<one_substituter_actor, worker_front_actor> {
        if (!sent_from_here(self))
          return caf::make_error(caf::sec::unexpected_message);
        auto rp = self->make_response_promise<one_substituter_actor, worker_front_actor>();
        hand_out_substituter(self, {rp, std::move(root), std::move(build)});
        return rp;
      },
      [=](cancel_atom, const one_substituter_actor& sub) {
        auto& state = self->state;
        if (!sent_from_here(self))
          return;
        if (auto it = state.substituters.find(sub.address()); it != state.substituters.end())
          if (auto& f = state.slots[it->second].front)
            self->send(f, cancel_atom::value, sub);
      },
      [=](stop_atom) -> caf::result<uint32_t> {
        if (!sent_from_here(self))
          return caf::make_error(caf::sec::unexpected_message);
        return stop(self);
      },
      [=](deadline_atom) {
        if (sent_from_here(self))
          stop_deadline(self);
      },
      [=](restart_atom, uint32_t i) {
        if (sent_from_here(self) && i < self->state.slots.size() && !self->state.slots[i].given_up && !self->state.stopping)
          start_worker(self, i);
      },
      [=](reaped_atom, int32_t pid, int32_t status) {
        if (!sent_from_here(self))
          return;
        auto& slots = self->state.slots;
        for (std::size_t i = 0; i < slots.size(); ++i)
          if (slots[i].pid == pid && self->state.stopping) {
            slots[i].pid = -1;
            close_link(slots[i]);
            sandbox::kill_build_groups_of(pid); // what its builds started, should any be left
            answer_stop_if_done(self);
          } else if (slots[i].pid == pid) {
            std::string why = "ended: " + sandbox::describe_wait_status(status);
            if (!slots[i].trouble.empty())
              why += " (" + slots[i].trouble + ")";
            lost(self, i, why, true);
          }
      },
  };
}

} // namespace

} // namespace kiln::worker_pool_impl

namespace kiln {

worker_pool_actor spawn_worker_pool(caf::actor_system& sys, worker_options options) {
  return sys.spawn(worker_pool_impl::worker_pool, std::move(options));
}

} // namespace kiln
