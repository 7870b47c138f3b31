#include <boost/test/unit_test.hpp>

#include "store/path_lock.hpp"
#include "tests/support/test_support.hpp"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace kiln;

BOOST_AUTO_TEST_SUITE(path_lock_tests)

BOOST_AUTO_TEST_CASE(excludes_other_processes_and_survives_deletion_by_the_holder) {
  test::temp_dir t;
  std::string path = t / "some-path";
  int to_parent[2], to_child[2];
  BOOST_REQUIRE(::pipe(to_parent) == 0 && ::pipe(to_child) == 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    auto l = path_lock::acquire(path);
    char c = 'x';
    (void)!::write(to_parent[1], &c, 1); // "I hold it"
    (void)!::read(to_child[0], &c, 1);   // wait for "go"
    l.release(true);                     // delete the lock file and mark it stale
    ::_exit(0);
  }
  char c;
  BOOST_REQUIRE(::read(to_parent[0], &c, 1) == 1);
  BOOST_TEST(!path_lock::try_acquire(path).held()); // the child holds it

  (void)!::write(to_child[1], "g", 1);
  auto mine = path_lock::acquire(path); // waits for the child, skips the stale file
  BOOST_TEST(mine.held());
  int status = 0;
  ::waitpid(pid, &status, 0);
  BOOST_TEST(WIFEXITED(status));
  struct stat st;
  BOOST_REQUIRE(::stat((path + ".lock").c_str(), &st) == 0);
  BOOST_TEST(st.st_size == 0); // we hold a fresh, unmarked lock file
}

BOOST_AUTO_TEST_CASE(a_dead_holder_releases_the_lock) {
  test::temp_dir t;
  std::string path = t / "p";
  pid_t pid = ::fork();
  if (pid == 0) {
    auto l = path_lock::acquire(path);
    ::_exit(0); // dies holding it, without cleaning up
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  BOOST_TEST(path_lock::try_acquire(path).held());
}

BOOST_AUTO_TEST_SUITE_END()
