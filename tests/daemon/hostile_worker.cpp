// kiln-test-hostile-worker: a kiln-worker gone bad, for
// test_kilnd_workers.py and test_kilnd_worker_faults.py (kilnd starts it
// through KILN_WORKER_PROGRAM). It
// links to kilnd as a worker does, and once kilnd hands it its front, it
// tries what a compromised worker could with it: open a log file of its
// choosing for a build nobody leased to it, write to and close such a log,
// have the front pass a request on to a builder as kilnd's goals do, stop
// whoever said hello as kilnd's worker pool and lease a builder of it, and
// send the front messages outside its interface (who said hello goes to
// $KILN_HOSTILE_REPORT.hello). Every kilnd actor it comes to hold a handle
// of (so could send messages to, an exit message that kills included) goes
// to $KILN_HOSTILE_REPORT.reach by name, its front as "front"; and it kills
// every one but its front that it holds at the hello. With
// KILN_HOSTILE_SCAN=FILE, each notes its hello in FILE.hellos, and the
// first to create FILE, once two have said hello (so the other's front is
// there), sends an exit message (kill) to every kilnd actor by number, its
// front's excepted, and writes how many it tried and "done" to FILE. Its
// substituters ask back whoever asks them (kilnd's front, since a run's
// substituter pool asks through it). It writes what each
// try got to $KILN_HOSTILE_REPORT, one line each, then serves builds as a
// worker does (so the test can see that kilnd still uses it). With
// KILN_HOSTILE_LINGER set it stays when its link ends, as a wedged worker
// would, to be killed at kilnd's stop.
#include "actors/actors.hpp"
#include "actors/build_host.hpp"
#include "actors/worker.hpp"

#include "caf/io/all.hpp"
#include "caf/io/basp_broker.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <set>
#include <thread>
#include <vector>

using namespace kiln;

namespace {

constexpr auto answer_within = std::chrono::seconds(5);
const std::string not_leased = "/nix/store/00000000000000000000000000000000-never-leased.drv";

struct hostile_config : caf::actor_system_config {
  hostile_config() {
    kiln::add_message_types(*this);
    load_worker_link(*this); // heartbeats as a worker's: kilnd takes a silent link for lost
  }
};

// This worker's BASP proxies of remote actors (their registry locks itself).
caf::proxy_registry& proxies(caf::actor_system& sys) {
  auto basp = sys.middleman().named_broker<caf::io::basp_broker>(caf::atom("BASP"));
  return *static_cast<caf::io::basp_broker*>(caf::actor_cast<caf::abstract_actor*>(basp))->proxy_registry_ptr();
}

// Every kilnd actor this worker could address: those it holds a proxy of
// (a handle or address it was sent, a sender it heard from, a replier).
// An entry may be null (a proxy being taken down).
std::vector<caf::strong_actor_ptr> within_reach(caf::actor_system& sys, const caf::node_id& kilnd) {
  return proxies(sys).get_all(kilnd);
}

// What a kilnd actor calls itself (CAF answers this for every actor).
std::string name_of(caf::actor_system& sys, const caf::strong_actor_ptr& a) {
  caf::scoped_actor self{sys};
  std::string name = "(no answer)";
  self->request(caf::actor_cast<caf::actor>(a), answer_within, caf::sys_atom::value, caf::get_atom::value,
                std::string("info"))
      .receive([&](caf::ok_atom, std::string&, caf::strong_actor_ptr&, std::string& n) { name = n; },
               [&](caf::error& e) { name = "(" + sys.render(e) + ")"; });
  return name;
}

// Each try's answer, as one line: "NAME: refused (why)" or "NAME: accepted".
// `others`: the kilnd actors but the front within its reach at the hello.
void attack(caf::actor_system& sys, logger_actor front, caf::actor pool, std::shared_ptr<build_host> host,
            const std::vector<caf::strong_actor_ptr>& others, const std::string& plant, std::ofstream& report) {
  caf::scoped_actor self{sys};
  auto accepted = [&](const std::string& name) { report << name << ": accepted" << std::endl; };
  auto refused = [&](const std::string& name, const caf::error& e) {
    report << name << ": refused (" << sys.render(e) << ")" << std::endl;
  };
  // An exit message cannot be refused: they are killed (the front would
  // only end this worker).
  for (auto& a : others)
    caf::anon_send_exit(a, caf::exit_reason::kill);
  report << "killed: " << others.size() << std::endl;
  self->send(front, log_open_atom::value, not_leased, plant, std::string("none"));
  self->request(front, answer_within, log_atom::value, not_leased, std::string("planted bytes\n"))
      .receive([&](uint64_t) { accepted("log"); }, [&](caf::error& e) { refused("log", e); });
  self->request(front, answer_within, log_close_atom::value, not_leased)
      .receive([&](bool) { accepted("close"); }, [&](caf::error& e) { refused("close", e); });
  // Its interface for kilnd's goals: run a request of the worker's choosing
  // on a builder of its choosing (one of its own).
  auto front_of_kilnd = caf::actor_cast<worker_front_actor>(front);
  auto mine = spawn_builder(sys, front, host, true);
  self->request(front_of_kilnd, answer_within, run_atom::value, mine, uint64_t(1), build_request{},
                caf::timespan{answer_within})
      .receive([&](build_report&) { accepted("run"); }, [&](caf::error& e) { refused("run", e); });
  caf::anon_send_exit(mine, caf::exit_reason::user_shutdown);
  // Whoever said hello (kilnd's worker pool, if its handle came with it):
  // stop every worker, and lease a builder as a goal would.
  auto kilnd_pool = caf::actor_cast<worker_pool_actor>(pool);
  self->request(kilnd_pool, answer_within, stop_atom::value)
      .receive([&](uint32_t) { accepted("pool stop"); }, [&](caf::error& e) { refused("pool stop", e); });
  self->request(kilnd_pool, answer_within, lease_atom::value, not_leased, front)
      .receive([&](builder_actor&, worker_front_actor&, uint64_t) { accepted("pool lease"); },
               [&](caf::error& e) { refused("pool lease", e); });
  // Outside the interface: the front is a typed actor; this is a request
  // of the dynamically typed kind, with a message it has no handler for.
  self->request(caf::actor_cast<caf::actor>(front), answer_within, std::string("rm -rf /"), uint64_t(42))
      .receive([&](std::string&) { accepted("unexpected"); }, [&](caf::error& e) { refused("unexpected", e); });
  // Still answering after all that?
  self->request(front, answer_within, log_close_atom::value, not_leased)
      .receive([&](bool) { accepted("close again"); }, [&](caf::error& e) { refused("close again", e); });
}

// Kills every kilnd actor by number from 1 to a thousand past its own
// front's, but its front: a proxy made for a number is how this worker's
// BASP addresses it (kilnd's drops messages to numbers in its registry of
// nobody). Returns how many numbers were tried.
int kill_by_number(caf::actor_system& sys, const caf::actor_addr& front) {
  int tried = 0;
  for (caf::actor_id id = 1; id <= front.id() + 1000; ++id) {
    if (id == front.id())
      continue;
    if (auto a = proxies(sys).get_or_put(front.node(), id)) {
      caf::anon_send_exit(a, caf::exit_reason::kill);
      ++tried;
    }
  }
  return tried;
}

// KILN_HOSTILE_SCAN (see the top): notes this worker's hello; the first to
// create `scan` waits (up to 30 s) for the other's, then kills by number.
void scan_once_both_said_hello(caf::actor_system& sys, const caf::actor_addr& front, const std::string& scan) {
  std::ofstream(scan + ".hellos", std::ios::app) << ::getpid() << std::endl;
  int fd = ::open(scan.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0)
    return; // the other one scans
  ::close(fd);
  auto hellos = [&] {
    std::ifstream in(scan + ".hellos");
    return std::count(std::istreambuf_iterator<char>(in), {}, '\n');
  };
  for (int i = 0; i < 3000 && hellos() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  int tried = kill_by_number(sys, front);
  std::ofstream(scan) << "tried: " << tried << "\ndone" << std::endl;
}

// Each kilnd actor within reach not `seen` before is added to `file` by
// name, the front as "front"; returns those but the front.
std::vector<caf::strong_actor_ptr> note_reach(caf::actor_system& sys, const caf::actor_addr& front,
                                              std::set<caf::actor_id>& seen, const std::string& file) {
  std::vector<caf::strong_actor_ptr> others;
  for (auto& a : within_reach(sys, front.node()))
    if (a && seen.insert(a->id()).second) {
      std::ofstream(file, std::ios::app) << (a->id() == front.id() ? "front" : name_of(sys, a)) << std::endl;
      if (a->id() != front.id())
        others.push_back(a);
    }
  return others;
}

using front_impl = worker_actor;

// A substituter that, asked for a path, turns on the one asking (a run's
// substituter pool, were its handle sent along): asks it for a path, writes
// what it got to the report ("subst pool: ..."), and answers "absent".
one_substituter_actor::behavior_type mole(one_substituter_actor::pointer self, std::string report_file) {
  auto turn = [=](const std::string& path) {
    auto pool = caf::actor_cast<substituter_actor>(self->current_sender());
    auto note = [report_file](const std::string& line) {
      std::ofstream(report_file, std::ios::app) << "subst pool: " << line << std::endl;
    };
    self->request(pool, answer_within, probe_atom::value, path, uint32_t(0))
        .then([note](substitute_outcome&) { note("accepted"); },
              [note, &sys = self->system()](caf::error& e) { note("refused (" + sys.render(e) + ")"); });
    substitute_outcome absent;
    absent.kind = substitute_outcome::absent;
    return absent;
  };
  return {
      [=](subst_atom, const std::string& path, uint32_t, bool) { return turn(path); },
      [=](probe_atom, const std::string& path, uint32_t) { return turn(path); },
  };
}

front_impl::behavior_type front(front_impl::pointer self, std::shared_ptr<build_host> host, std::string plant,
                                std::string report_file) {
  auto kilnd = std::make_shared<logger_actor>();
  return {
      [=](hello_atom, logger_actor k) -> int32_t {
        *kilnd = k;
        auto pool = caf::actor_cast<caf::actor>(self->current_sender()); // who says hello
        std::ofstream(report_file + ".hello") << (pool.address() == k.address() ? "front" : "another actor") << std::endl;
        // Gone with kilnd, as a worker is (its builds with it), unless told
        // to linger (KILN_HOSTILE_LINGER: a worker wedged at kilnd's stop).
        self->monitor(k);
        self->set_down_handler([linger = std::getenv("KILN_HOSTILE_LINGER") != nullptr](caf::down_msg&) {
          if (!linger)
            ::_exit(0);
        });
        // The attack runs on a thread of its own: it waits for answers.
        // Then that thread watches what comes within reach, every 2 ms (a
        // short-lived actor may be missed; the long-lived ones a leak would
        // expose are not).
        std::thread([&sys = self->system(), k, pool, host, plant, report_file] {
          std::set<caf::actor_id> seen;
          auto others = note_reach(sys, k.address(), seen, report_file + ".reach"); // named before they are killed
          {
            std::ofstream report(report_file);
            attack(sys, k, pool, host, others, plant, report);
            report << "done" << std::endl;
          }
          if (const char* scan = std::getenv("KILN_HOSTILE_SCAN"))
            scan_once_both_said_hello(sys, k.address(), scan);
          for (;;) {
            note_reach(sys, k.address(), seen, report_file + ".reach");
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
          }
        }).detach();
        return static_cast<int32_t>(::getpid());
      },
      [=](spawn_atom) -> builder_actor { return spawn_builder(self->system(), *kilnd, host, true); },
      [=](spawn_atom, const std::string&, const build_options&) -> one_substituter_actor {
        return self->spawn(mole, report_file);
      },
      [=](cancel_atom, const one_substituter_actor&) {},
  };
}

} // namespace

int main(int argc, char** argv) {
  const char* report = std::getenv("KILN_HOSTILE_REPORT");
  const char* plant = std::getenv("KILN_HOSTILE_PLANT");
  if (argc < 3 || std::string(argv[1]) != "--link-fd" || !report || !plant) {
    std::cerr << "usage: KILN_HOSTILE_REPORT=FILE KILN_HOSTILE_PLANT=FILE kiln-test-hostile-worker --link-fd 3\n";
    return 2;
  }
  int fd = std::atoi(argv[2]);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  hostile_config cfg;
  caf::actor_system sys{cfg};
  std::string build_dir = argc >= 5 ? argv[4] : "";
  auto me = sys.spawn(front, std::make_shared<build_host>(build_dir), std::string(plant), std::string(report));
  auto& mm = sys.middleman();
  auto basp = mm.named_broker<caf::io::basp_broker>(caf::atom("BASP"));
  caf::anon_send(basp, caf::publish_atom::value, mm.backend().new_scribe(fd), uint16_t(1),
                 caf::actor_cast<caf::strong_actor_ptr>(me), sys.message_types<worker_actor>());
  // Ends when kilnd does (the link breaks) or kills it.
  ::pause();
}
