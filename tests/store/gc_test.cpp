// Garbage collection with real processes: roots of every kind, temp roots
// held by live and dead processes, the GC socket (with Nix 2.8 as the other
// party), keep-outputs/keep-derivations, deleting named paths.
#include <boost/test/unit_test.hpp>

#include "store/format/derivation.hpp"
#include "store/io/error.hpp"
#include "store/io/file_lock.hpp"
#include "store/io/file_ops.hpp"
#include "store/local/gc.hpp"
#include "store/local/gc_root_server.hpp"
#include "store/local/local_store.hpp"
#include "store/format/nar.hpp"
#include "store/local/optimise.hpp"
#include "store/local/path_lock.hpp"
#include "store/local/temp_roots.hpp"
#include "tests/support/test_support.hpp"

#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace kiln;

namespace {

// Runs `f` in a child process with its own local_store on `layout`; the
// child's temp roots die with it.
template <typename F>
void in_child(const store_layout& layout, F f) {
  pid_t pid = ::fork();
  if (pid == 0) {
    try {
      local_store s(layout);
      f(s);
      ::_exit(0);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      ::_exit(1);
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  BOOST_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

store_path text_path(const std::string& name, const std::string& contents,
                     const store_path_set& refs = {}) {
  return make_text_path(name, hash_string(hash_algo::sha256, contents), refs);
}

// A child that adds a text path and keeps it as a temp root until told to
// go (by closing `go`).
struct holder {
  pid_t pid = -1;
  int go = -1;

  holder(const store_layout& layout, const std::string& name, const std::string& contents) {
    int ready[2], go_pipe[2];
    BOOST_REQUIRE(::pipe(ready) == 0 && ::pipe(go_pipe) == 0);
    pid = ::fork();
    if (pid == 0) {
      ::close(ready[0]);
      ::close(go_pipe[1]);
      local_store s(layout);
      s.add_text(name, contents, {});
      (void)!::write(ready[1], "r", 1);
      char c;
      (void)!::read(go_pipe[0], &c, 1);
      ::_exit(0);
    }
    ::close(ready[1]);
    ::close(go_pipe[0]);
    go = go_pipe[1];
    char c;
    BOOST_REQUIRE(::read(ready[0], &c, 1) == 1);
    ::close(ready[0]);
  }
  void release() {
    ::close(go);
    int status;
    ::waitpid(pid, &status, 0);
  }
};

struct fixture {
  test::temp_dir tmp;
  store_layout layout{tmp / "root"};
  local_store store{layout};

  // leaf <- mid <- top, plus an unrelated path.
  store_path leaf = text_path("leaf", "leaf");
  store_path mid = text_path("mid", "mid " + leaf.full(), {leaf});
  store_path top = text_path("top", "top " + mid.full(), {mid});
  store_path other = text_path("other", "other");

  fixture() {
    in_child(layout, [&](local_store& s) {
      s.add_text("leaf", "leaf", {});
      s.add_text("mid", "mid " + leaf.full(), {leaf});
      s.add_text("top", "top " + mid.full(), {mid});
      s.add_text("other", "other", {});
    });
  }

  gc_result gc(gc_action a, store_path_set paths = {}) {
    gc_options o;
    o.action = a;
    o.paths = std::move(paths);
    return collect_garbage(store, o);
  }
  void link_root(const std::string& link, const std::string& target) {
    BOOST_REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);
  }
  bool valid_and_present(const store_path& p) {
    return store.db().is_valid(p) && test::exists(store.real_path(p));
  }
  bool gone(const store_path& p) {
    return !store.db().is_valid(p) && !test::exists(store.real_path(p));
  }
};

std::vector<std::string> fulls(std::initializer_list<store_path> ps) {
  std::vector<std::string> v;
  for (auto& p : ps)
    v.push_back(p.full());
  std::sort(v.begin(), v.end());
  return v;
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(gc_tests, fixture)

BOOST_AUTO_TEST_CASE(without_roots_everything_is_dead_and_goes) {
  BOOST_TEST(gc(gc_action::print_live).paths.empty());
  BOOST_TEST(gc(gc_action::print_dead).paths == fulls({leaf, mid, top, other}));
  auto r = gc(gc_action::delete_dead);
  BOOST_TEST(r.paths == fulls({leaf, mid, top, other}));
  // Each file's size: "leaf", "mid " + leaf, "top " + mid, "other".
  BOOST_TEST(r.bytes_freed == 4 + (4 + leaf.full().size()) + (4 + mid.full().size()) + 5);
  BOOST_TEST(store.db().query_all_valid_paths().empty());
  BOOST_TEST(test::list_dir(layout.store_dir()).empty());
  BOOST_TEST(gc(gc_action::delete_dead).paths.empty()); // idempotent
}

BOOST_AUTO_TEST_CASE(a_direct_root_keeps_its_closure) {
  link_root(layout.gcroots_dir() + "/top", top.full());
  auto live = gc(gc_action::print_live);
  BOOST_TEST(live.paths == fulls({leaf, mid, top}));
  BOOST_TEST(live.roots.at(top).count(layout.gcroots_dir() + "/top") == 1);
  BOOST_TEST(gc(gc_action::delete_dead).paths == fulls({other}));
  BOOST_TEST(valid_and_present(top));
  BOOST_TEST(valid_and_present(leaf));
  BOOST_TEST(gone(other));
}

BOOST_AUTO_TEST_CASE(roots_in_subdirectories_profiles_files_and_real_paths) {
  ::mkdir((layout.gcroots_dir() + "/sub").c_str(), 0755);
  link_root(layout.gcroots_dir() + "/sub/m", mid.full() + "/inside/a/path"); // into a path
  test::write_file(layout.profiles_dir() + "/" + std::string(other.base_name()), "");
  auto live = gc(gc_action::print_live);
  BOOST_TEST(live.paths == fulls({leaf, mid, other}));
  // A link by the store's real location roots too.
  link_root(layout.gcroots_dir() + "/real", store.real_path(top));
  BOOST_TEST(gc(gc_action::print_live).paths == fulls({leaf, mid, top, other}));
}

BOOST_AUTO_TEST_CASE(indirect_roots_and_stale_ones_under_auto) {
  ::mkdir((layout.gcroots_dir() + "/auto").c_str(), 0755);
  std::string result = tmp / "result";
  link_root(result, top.full());
  link_root(layout.gcroots_dir() + "/auto/a", result);
  link_root(layout.gcroots_dir() + "/auto/stale", tmp / "no-such-result");
  link_root(layout.gcroots_dir() + "/not-auto", tmp / "no-such-result-either");
  auto live = gc(gc_action::print_live);
  BOOST_TEST(live.paths == fulls({leaf, mid, top}));
  BOOST_TEST(live.roots.at(top).count(result) == 1);
  BOOST_TEST(!test::exists(layout.gcroots_dir() + "/auto/stale")); // removed as Nix does
  BOOST_TEST(test::exists(layout.gcroots_dir() + "/not-auto"));    // only auto/ is cleaned
  ::unlink(result.c_str());
  BOOST_TEST(gc(gc_action::delete_dead).paths == fulls({leaf, mid, top, other}));
}

// Named as Nix names it: Nix's --add-root --indirect for the same link
// lands on the same gcroots/auto entry.
BOOST_AUTO_TEST_CASE(indirect_roots_are_registered_as_nix_registers_them) {
  std::string result = tmp / "result";
  link_root(result, top.full());
  std::string ours = add_indirect_root(store, tmp.path() + "/./result");
  BOOST_TEST(test::list_dir(layout.gcroots_dir() + "/auto").size() == 1u);
  char target[4096] = {};
  BOOST_REQUIRE(::readlink(ours.c_str(), target, sizeof target - 1) > 0);
  BOOST_TEST(std::string(target) == result);
  BOOST_TEST(gc(gc_action::print_live).paths == fulls({leaf, mid, top}));
  ::unlink(ours.c_str());
  ::unlink(result.c_str());
  std::string cmd = "nix-store --store '" + layout.root + "' --realise " + top.full() +
                    " --add-root '" + result + "' --indirect >/dev/null 2>&1";
  BOOST_REQUIRE(std::system(cmd.c_str()) == 0);
  BOOST_TEST(test::list_dir(layout.gcroots_dir() + "/auto") ==
             std::vector<std::string>{split_path(ours).second});
}

BOOST_AUTO_TEST_CASE(a_permanent_root_waits_for_a_running_collection) {
  unique_fd gc_lock = open_lock_file(gc_lock_path(layout.state_dir()));
  lock_file(gc_lock.get(), lock_kind::exclusive, true, "gc.lock");
  ::mkdir((layout.state_dir() + "/gc-socket").c_str(), 0755);
  gc_root_server server(gc_socket_path(layout.state_dir()), "/nix/store", {});
  std::string link = layout.gcroots_dir() + "/o";
  pid_t pid = ::fork();
  if (pid == 0) {
    local_store s(layout);
    add_permanent_root(s, link, other);
    ::_exit(0);
  }
  for (int i = 0; i < 5000 && !server.is_root(other); ++i)
    ::usleep(1000);
  BOOST_TEST(server.is_root(other)); // it is a temp root at once
  ::usleep(100000);
  BOOST_TEST(!test::exists(link)); // but not linked while the collection runs
  lock_file(gc_lock.get(), lock_kind::none, true, "gc.lock");
  int status = 0;
  ::waitpid(pid, &status, 0);
  BOOST_TEST(WEXITSTATUS(status) == 0);
  BOOST_TEST(test::exists(link));
}

BOOST_AUTO_TEST_CASE(a_root_to_an_invalid_path_roots_nothing) {
  link_root(layout.gcroots_dir() + "/x", "/nix/store/00000000000000000000000000000000-nothing");
  link_root(layout.gcroots_dir() + "/y", "/nix/store/not-a-store-path");
  BOOST_TEST(gc(gc_action::print_live).paths.empty());
}

BOOST_AUTO_TEST_CASE(temp_roots_of_live_processes_hold_and_dead_ones_are_cleared) {
  holder h(layout, "held", "held");
  store_path held = text_path("held", "held");
  std::string file = layout.temproots_dir() + "/" + std::to_string(h.pid);
  BOOST_TEST(test::exists(file));
  auto r = gc(gc_action::delete_dead);
  BOOST_TEST(r.paths == fulls({leaf, mid, top, other}));
  BOOST_TEST(valid_and_present(held));
  BOOST_TEST(r.roots.at(held).count("{temp:" + std::to_string(h.pid) + "}") == 1);
  h.release(); // the process is gone but its file stays (as after a crash)
  BOOST_TEST(test::exists(file));
  BOOST_TEST(gc(gc_action::delete_dead).paths == fulls({held}));
  BOOST_TEST(!test::exists(file));
}

BOOST_AUTO_TEST_CASE(keep_derivations_and_keep_outputs) {
  // A .drv and its output, recorded as Nix records them.
  store_path out = parse_store_path("/nix/store/0s8jcmp0ri4gyxsxgnkx6iqp3g6fsc7p-thing");
  derivation d;
  d.outputs["out"].path = out.full();
  d.platform = "x86_64-linux";
  d.builder = "/bin/sh";
  store_path drv = derivation_store_path(d, "thing");
  in_child(layout, [&](local_store& s) {
    BOOST_REQUIRE(s.add_derivation(d, "thing").path == drv);
    test::add_built_output(s, out, drv);
  });
  auto live_with = [&](const store_path& root, bool keep_outputs, bool keep_derivations) {
    auto live = live_paths(store.db(), {root}, keep_outputs, keep_derivations);
    return std::vector<store_path>(live.begin(), live.end());
  };
  using v = std::vector<store_path>;
  BOOST_TEST((live_with(out, false, true) == v{drv, out} || live_with(out, false, true) == v{out, drv}));
  BOOST_TEST((live_with(out, false, false) == v{out}));
  BOOST_TEST((live_with(drv, false, true) == v{drv}));
  BOOST_TEST(live_with(drv, true, true).size() == 2);
  // Defaults, as Nix's: a rooted output keeps its .drv, a rooted .drv not its output.
  link_root(layout.gcroots_dir() + "/d", drv.full());
  gc(gc_action::delete_dead);
  BOOST_TEST(store.db().is_valid(drv));
  BOOST_TEST(gone(out));
}

BOOST_AUTO_TEST_CASE(delete_named_paths_refuses_live_and_referred_ones) {
  link_root(layout.gcroots_dir() + "/m", mid.full());
  BOOST_CHECK_EXCEPTION(gc(gc_action::delete_specific, {leaf}), error, [](const error& e) {
    return std::string(e.what()).find("reachable from a root") != std::string::npos;
  });
  BOOST_CHECK_EXCEPTION(gc(gc_action::delete_specific, {mid}), error, [&](const error& e) {
    return std::string(e.what()).find("it is a root (" + layout.gcroots_dir() + "/m)") != std::string::npos;
  });
  ::unlink((layout.gcroots_dir() + "/m").c_str());
  BOOST_CHECK_EXCEPTION(gc(gc_action::delete_specific, {mid}), error, [&](const error& e) {
    return std::string(e.what()).find("'" + top.full() + "' refers to it") != std::string::npos;
  });
  BOOST_CHECK_EXCEPTION(
      gc(gc_action::delete_specific, {parse_store_path("/nix/store/00000000000000000000000000000000-x")}),
      error, [](const error& e) { return std::string(e.what()).find("not in the store") != std::string::npos; });
  BOOST_TEST(valid_and_present(mid)); // refusals delete nothing
  auto r = gc(gc_action::delete_specific, {mid, top});
  BOOST_TEST(r.paths == fulls({mid, top}));
  BOOST_TEST(valid_and_present(leaf));
  BOOST_TEST(valid_and_present(other));
}

BOOST_AUTO_TEST_CASE(max_freed_stops_early) {
  gc_options o;
  o.max_freed = 1;
  auto r = collect_garbage(store, o);
  BOOST_TEST(r.paths.size() == 1u);
  BOOST_TEST(store.db().query_all_valid_paths().size() == 3u);
  // What stayed is still a consistent store: no path lost a reference.
  for (auto& p : store.db().query_all_valid_paths())
    for (auto& ref : store.db().query_references(p))
      BOOST_TEST(valid_and_present(ref));
}

BOOST_AUTO_TEST_CASE(invalid_leftovers_go_unless_locked_or_rooted) {
  gc(gc_action::delete_dead);
  std::string debris = layout.store_dir() + "/11111111111111111111111111111111-debris";
  std::string busy = layout.store_dir() + "/22222222222222222222222222222222-busy";
  ::mkdir(debris.c_str(), 0555);
  ::mkdir(busy.c_str(), 0755);
  test::write_file(layout.store_dir() + "/33333333333333333333333333333333-old.lock", "");
  test::write_file(layout.store_dir() + "/not a store path", "kept");
  pid_t pid = ::fork();
  if (pid == 0) {
    auto l = path_lock::acquire(busy); // an add or build in progress
    ::pause();
    ::_exit(0);
  }
  // Wait until the child holds the lock.
  for (int i = 0; i < 1000 && path_lock::try_acquire(busy).held(); ++i)
    ::usleep(1000);
  // A lock file nobody holds is dead, as Nix counts it; the held one is not.
  BOOST_TEST(gc(gc_action::print_dead).paths ==
             (std::vector<std::string>{"/nix/store/11111111111111111111111111111111-debris",
                                       "/nix/store/22222222222222222222222222222222-busy",
                                       "/nix/store/33333333333333333333333333333333-old.lock"}));
  auto r = gc(gc_action::delete_dead);
  BOOST_TEST(r.paths == (std::vector<std::string>{"/nix/store/11111111111111111111111111111111-debris",
                                                  "/nix/store/33333333333333333333333333333333-old.lock"}));
  BOOST_TEST(!test::exists(debris));
  BOOST_TEST(test::exists(busy));
  BOOST_TEST(test::exists(busy + ".lock"));
  BOOST_TEST(!test::exists(layout.store_dir() + "/33333333333333333333333333333333-old.lock"));
  BOOST_TEST(test::exists(layout.store_dir() + "/not a store path"));
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

BOOST_AUTO_TEST_CASE(unused_links_are_removed_after_optimise) {
  in_child(layout, [&](local_store& s) {
    std::string a = tmp / "a", b = tmp / "b";
    ::mkdir(a.c_str(), 0755);
    ::mkdir(b.c_str(), 0755);
    std::string big(10000, 'z');
    test::write_file(a + "/f", big);
    test::write_file(b + "/f", big);
    s.add_path(a);
    s.add_path(b);
  });
  BOOST_TEST(optimise_store(store).files_linked == 1u);
  // One link per distinct file: the fixture's four texts and the shared one.
  BOOST_TEST(test::list_dir(layout.store_dir() + "/.links").size() == 5u);
  link_root(layout.gcroots_dir() + "/leaf", leaf.full());
  auto r = gc(gc_action::delete_dead);
  BOOST_TEST(r.links_removed == 4u);
  BOOST_TEST(r.bytes_freed >= 10000u); // the shared file's last name was its link
  BOOST_TEST(test::list_dir(layout.store_dir() + "/.links").size() == 1u); // leaf's
  ::unlink((layout.gcroots_dir() + "/leaf").c_str());
  r = gc(gc_action::delete_dead);
  BOOST_TEST(r.links_removed == 1u);
  BOOST_TEST(test::list_dir(layout.store_dir() + "/.links").empty());
}

// The socket half of the protocol, with the collector's lock held here: a
// process that cannot take gc.lock shared sends its root and waits for the
// answer, which is held back while that path is being deleted.
BOOST_AUTO_TEST_CASE(roots_sent_over_the_socket_wait_for_a_deletion_in_progress) {
  unique_fd gc_lock = open_lock_file(gc_lock_path(layout.state_dir()));
  lock_file(gc_lock.get(), lock_kind::exclusive, true, "gc.lock");
  ::mkdir((layout.state_dir() + "/gc-socket").c_str(), 0755);
  gc_root_server server(gc_socket_path(layout.state_dir()), "/nix/store", {});
  BOOST_TEST(server.claim_for_deletion(other));

  int done[2];
  BOOST_REQUIRE(::pipe(done) == 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    temp_roots::for_store(layout.state_dir(), "/nix/store").add(other);
    (void)!::write(done[1], "d", 1);
    ::_exit(0);
  }
  ::close(done[1]);
  pollfd p{done[0], POLLIN, 0};
  BOOST_TEST(::poll(&p, 1, 300) == 0); // still waiting: the deletion is not over
  server.finish_deletion();
  char c;
  BOOST_TEST(::read(done[0], &c, 1) == 1);
  ::waitpid(pid, nullptr, 0);
  BOOST_TEST(server.received() == 1u);
  BOOST_TEST(server.is_root(other));
  BOOST_TEST(!server.claim_for_deletion(other));
  BOOST_TEST(!server.is_root(leaf));
  // The root also went into the process's file, for collectors to come.
  BOOST_TEST(test::read_file(layout.temproots_dir() + "/" + std::to_string(pid)) ==
             other.full() + '\0');
}

// Nix 2.8 as the other party: while Kiln's collector holds gc.lock,
// `nix-store --add` must hand its new path to Kiln's socket.
BOOST_AUTO_TEST_CASE(nix_sends_its_temp_roots_to_kilns_collector) {
  unique_fd gc_lock = open_lock_file(gc_lock_path(layout.state_dir()));
  lock_file(gc_lock.get(), lock_kind::exclusive, true, "gc.lock");
  ::mkdir((layout.state_dir() + "/gc-socket").c_str(), 0755);
  gc_root_server server(gc_socket_path(layout.state_dir()), "/nix/store", {});
  std::string file = tmp / "from-nix";
  test::write_file(file, "added by nix");
  std::string cmd = "nix-store --store '" + layout.root + "' --add '" + file + "' 2>&1";
  FILE* out = ::popen(cmd.c_str(), "r");
  BOOST_REQUIRE(out);
  char buf[512] = {};
  std::string printed;
  while (std::fgets(buf, sizeof buf, out))
    printed += buf;
  BOOST_REQUIRE_MESSAGE(::pclose(out) == 0, printed);
  store_path added = parse_store_path(printed.substr(0, printed.find('\n')));
  BOOST_TEST(server.received() >= 1u);
  BOOST_TEST(server.is_root(added));
}

// And the other way round: Nix's collector honours Kiln's temp-roots file.
BOOST_AUTO_TEST_CASE(nix_gc_keeps_kilns_temp_roots) {
  holder h(layout, "held", "held");
  store_path held = text_path("held", "held");
  std::string cmd = "nix-store --store '" + layout.root + "' --gc 2>&1";
  auto collect = [&] {
    FILE* out = ::popen(cmd.c_str(), "r");
    BOOST_REQUIRE(out);
    std::string printed;
    char buf[512];
    while (std::fgets(buf, sizeof buf, out))
      printed += buf;
    BOOST_REQUIRE_MESSAGE(::pclose(out) == 0, "Nix's collector failed: " + printed);
  };
  collect();
  BOOST_TEST(valid_and_present(held));
  BOOST_TEST(gone(other));
  h.release();
  collect();
  BOOST_TEST(gone(held));
}

BOOST_AUTO_TEST_SUITE_END()
