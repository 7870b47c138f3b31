#include <boost/test/unit_test.hpp>

#include "store/local/optimise.hpp"
#include "store/local/verify.hpp"
#include "tests/support/test_support.hpp"

#include <csignal>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace kiln;

namespace {

struct stat stat_of(const std::string& p) {
  struct stat st;
  BOOST_REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st;
}

// Three paths sharing content in nested directories and at the top.
void add_twins(local_store& store, const test::temp_dir& tmp) {
  std::string big(9000, 'q');
  for (auto name : {"a", "b", "c"}) {
    ::mkdir((tmp / name).c_str(), 0755);
    ::mkdir((tmp / name + "/sub").c_str(), 0755);
    test::write_file(tmp / name + "/sub/same", big);
    test::write_file(tmp / name + "/exec", big, 0755);
    store.add_path(tmp / name);
  }
  test::write_file(tmp / "single", big);
  store.add_path(tmp / "single");
}

// Every valid path hashes to its record and nothing of the optimiser is
// inside one (a stray file would change its hash).
void check_contents(local_store& store, const std::string& when) {
  auto problems = verify_paths(store, store.db().query_all_valid_paths(), true);
  BOOST_TEST(problems.empty(), when << ": " << (problems.empty() ? "" : problems[0].problem));
}

// And every directory in a path is canonical again, and nothing but the
// paths, their lock files and .links is left in the store directory.
void check_store_intact(local_store& store, const std::string& when) {
  check_contents(store, when);
  std::set<std::string> expected{".links"};
  for (auto& p : store.db().query_all_valid_paths()) {
    expected.insert(std::string(p.base_name()));
    std::string real = store.real_path(p);
    for (auto dir : {real, real + "/sub"}) {
      struct stat st;
      if (::lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        BOOST_TEST(((st.st_mode & 07777) == 0555 && st.st_mtime == 1), when << ": " << dir << " is not canonical");
    }
  }
  for (auto& name : test::list_dir(store.layout().store_dir()))
    BOOST_TEST((expected.count(name) || name.find(".lock") != std::string::npos),
               when << ": stray '" << name << "' in the store directory");
}

} // namespace

BOOST_AUTO_TEST_SUITE(optimise_tests)

// A run killed (SIGKILL, in a child) after each of its steps in turn leaves
// every valid path verifying; the next run finishes the job, puts opened
// directories back and removes the dead run's temporary link.
BOOST_AUTO_TEST_CASE(a_run_killed_at_any_step_leaves_every_path_verifying) {
  std::vector<optimise_step> steps; // of a run that is not killed
  {
    test::temp_dir tmp;
    local_store store(store_layout{tmp / "root"});
    add_twins(store, tmp);
    optimise_store(store, [&](optimise_step s) { steps.push_back(s); });
    check_store_intact(store, "an undisturbed run");
  }
  BOOST_TEST_REQUIRE(steps.size() >= 10u);
  std::set<optimise_step> kinds(steps.begin(), steps.end());
  BOOST_TEST(kinds.size() == 5u); // every kind of step is reached, so killed at

  for (std::size_t k = 1; k <= steps.size(); ++k) {
    test::temp_dir tmp;
    {
      local_store store(store_layout{tmp / "root"});
      add_twins(store, tmp);
    }
    pid_t pid = ::fork();
    if (pid == 0) {
      local_store store(store_layout{tmp / "root"});
      std::size_t n = 0;
      optimise_store(store, [&](optimise_step) {
        if (++n == k)
          ::raise(SIGKILL);
      });
      ::_exit(0);
    }
    BOOST_REQUIRE(pid > 0);
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::string when = "killed after step " + std::to_string(k);
    BOOST_TEST_REQUIRE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL), when);
    local_store store(store_layout{tmp / "root"});
    check_contents(store, when);
    optimise_store(store);
    check_store_intact(store, when + ", then run again");
    BOOST_TEST(optimise_store(store).files_linked == 0u, when << ": the second run left work undone");
  }
}

BOOST_AUTO_TEST_CASE(links_identical_files_and_keeps_every_hash) {
  test::temp_dir tmp;
  local_store store(store_layout{tmp / "root"});
  std::string big(70000, 'z');
  for (auto name : {"a", "b"}) {
    ::mkdir((tmp / name).c_str(), 0755);
    test::write_file(tmp / name + "/same", big);
    test::write_file(tmp / name + "/exec", big, 0755); // same bytes, but executable
  }
  test::write_file(tmp / "b/other", "different");
  test::write_file(tmp / "top", big); // a top-level single-file path
  auto a = store.add_path(tmp / "a"), b = store.add_path(tmp / "b"), top = store.add_path(tmp / "top");

  auto r = optimise_store(store);
  BOOST_TEST(r.files_seen == 6u);
  BOOST_TEST(r.files_linked == 3u); // b/same, b/exec, top
  BOOST_TEST(r.bytes_saved == 3u * big.size());
  auto same_a = stat_of(store.real_path(a.path) + "/same");
  BOOST_TEST(same_a.st_ino == stat_of(store.real_path(b.path) + "/same").st_ino);
  BOOST_TEST(same_a.st_ino == stat_of(store.real_path(top.path)).st_ino);
  BOOST_TEST(same_a.st_ino != stat_of(store.real_path(a.path) + "/exec").st_ino);
  BOOST_TEST(stat_of(store.real_path(b.path)).st_mtime == 1); // directory times restored
  BOOST_TEST((stat_of(store.real_path(b.path)).st_mode & 07777) == 0555u);
  BOOST_TEST(verify_paths(store, store.db().query_all_valid_paths(), true).empty());

  auto again = optimise_store(store);
  BOOST_TEST(again.files_linked == 0u);
  BOOST_TEST(again.bytes_saved == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
