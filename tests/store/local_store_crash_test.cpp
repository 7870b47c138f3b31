// Crash and concurrency behaviour of the local store, with real processes:
// children are SIGKILLed in the middle of adds, or race each other.
#include <boost/test/unit_test.hpp>

#include "store/local/local_store.hpp"
#include "store/format/nar.hpp"
#include "tests/support/test_support.hpp"

#include <chrono>
#include <csignal>
#include <random>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace kiln;

namespace {

// A tree large enough that adding it takes a while (about 24 MiB, 300 files).
void make_big_tree(const std::string& root, int seed) {
  std::mt19937 rng(seed);
  ::mkdir(root.c_str(), 0755);
  for (int d = 0; d < 10; ++d) {
    std::string dir = root + "/d" + std::to_string(d);
    ::mkdir(dir.c_str(), 0755);
    for (int f = 0; f < 30; ++f) {
      std::string data(rng() % (160 << 10), '\0');
      for (auto& c : data)
        c = static_cast<char>(rng());
      test::write_file(dir + "/f" + std::to_string(f), data, f % 3 ? 0644 : 0755);
    }
  }
}

int wait_for(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

// The store holds exactly its valid paths: no temporaries, journal entries
// or lock files of finished adds, and every valid path hashes to its record.
void check_consistent(local_store& store, std::size_t& valid_paths) {
  auto valid = store.db().query_all_valid_paths();
  valid_paths = valid.size();
  std::set<std::string> expected;
  for (auto& p : valid) {
    expected.insert(std::string(p.base_name()));
    auto info = store.db().query_path_info(p);
    BOOST_TEST((hash_path(store.real_path(p)).nar_hash == info->nar_hash), p.full());
  }
  auto entries = test::list_dir(store.layout().store_dir());
  std::string listing;
  for (auto& e : entries)
    listing += " " + e;
  BOOST_TEST((std::set<std::string>(entries.begin(), entries.end()) == expected),
             "store directory holds:" << listing);
  BOOST_TEST(test::list_dir(store.layout().pending_dir()).empty());
  sqlite_stmt q(store.db().db(), "pragma integrity_check", "checking integrity");
  BOOST_REQUIRE(q.step());
  BOOST_TEST(q.text(0) == "ok");
}

} // namespace

BOOST_AUTO_TEST_SUITE(local_store_crash)

BOOST_AUTO_TEST_CASE(sigkill_at_any_moment_leaves_the_path_complete_or_absent) {
  test::temp_dir tmp;
  std::string src = tmp / "big";
  make_big_tree(src, 1);

  // How long one uninterrupted add takes, in a child like the trials.
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    local_store s(store_layout{tmp / "timing"});
    s.add_path(src);
    ::_exit(0);
  }
  BOOST_REQUIRE(WIFEXITED(wait_for(pid)));
  auto full = std::chrono::steady_clock::now() - t0;

  // Kill moments spread evenly from "at once" to 3x an add's duration; on a
  // loaded machine adds slow down, so while none has finished, more trials
  // follow, each later than the last (at most 20).
  const int trials = 60;
  int complete = 0, absent = 0, run = 0;
  for (int i = 0; i < trials || (complete == 0 && i < trials + 20); ++i, ++run) {
    std::string root = tmp / ("trial" + std::to_string(i));
    auto delay = full * 3 * i / trials;
    pid = ::fork();
    if (pid == 0) {
      local_store s(store_layout{root});
      s.add_path(src);
      ::_exit(0);
    }
    std::this_thread::sleep_for(delay);
    ::kill(pid, SIGKILL);
    wait_for(pid);

    local_store reopened(store_layout{root});
    std::size_t valid = 0;
    check_consistent(reopened, valid);
    BOOST_TEST(valid <= 1u);
    (valid == 1 ? complete : absent)++;
  }
  double ms = std::chrono::duration<double, std::milli>(full).count();
  BOOST_TEST_MESSAGE("crash trials: " << complete << " complete, " << absent << " absent; one add takes " << ms << " ms");
  BOOST_TEST(complete + absent == run);
  BOOST_TEST(absent > 0);   // some kills landed mid-add...
  BOOST_TEST(complete > 0); // ...and some after it finished
}

BOOST_AUTO_TEST_CASE(eight_processes_adding_same_and_different_paths_agree) {
  test::temp_dir tmp;
  std::string shared = tmp / "shared";
  make_big_tree(shared, 2);
  for (int i = 0; i < 8; ++i) {
    std::string own = tmp / ("own" + std::to_string(i));
    ::mkdir(own.c_str(), 0755);
    test::write_file(own + "/id", std::to_string(i));
  }
  store_layout layout{tmp / "root"};
  { local_store init(layout); } // create the database before the race
  std::vector<pid_t> children;
  for (int i = 0; i < 8; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      try {
        local_store s(layout);
        auto a = s.add_path(shared);
        auto b = s.add_path(tmp / ("own" + std::to_string(i)));
        s.add_text("note.txt", "shared text", {a.path});
        s.add_text("own-note.txt", "from " + std::to_string(i), {b.path});
        ::_exit(0);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child %d: %s\n", i, e.what());
        ::_exit(1);
      }
    }
    children.push_back(pid);
  }
  for (auto pid : children) {
    int status = wait_for(pid);
    BOOST_TEST((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  }
  local_store store(layout);
  std::size_t valid = 0;
  check_consistent(store, valid);
  BOOST_TEST(valid == 1u + 8u + 1u + 8u); // shared, 8 own, shared note, 8 own notes
}

BOOST_AUTO_TEST_SUITE_END()
