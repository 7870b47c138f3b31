#include <boost/test/unit_test.hpp>

#include "store/local/path_lock.hpp"
#include "tests/support/test_support.hpp"

#include <csignal>
#include <cstdlib>
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

BOOST_AUTO_TEST_CASE(two_locks_in_one_process_exclude_each_other) {
  test::temp_dir t;
  std::string path = t / "p";
  auto first = path_lock::acquire(path);
  BOOST_TEST(!path_lock::try_acquire(path).held());
  first.release(true);
  BOOST_TEST(path_lock::try_acquire(path).held());
}

// Nix takes its locks with flock(2), as flock(1) does: a lock held by Kiln
// must stop flock(1), and one held by flock(1) must stop Kiln.
BOOST_AUTO_TEST_CASE(excludes_flock_holders_as_nix_is_one) {
  test::temp_dir t;
  std::string path = t / "p";
  {
    auto l = path_lock::acquire(path);
    std::string cmd = "flock --nonblock --exclusive '" + path + ".lock' true";
    BOOST_TEST(WEXITSTATUS(std::system(cmd.c_str())) == 1);
  }
  int ready[2];
  BOOST_REQUIRE(::pipe(ready) == 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ready[0]);
    ::dup2(ready[1], 3);
    // One process, so killing it drops the lock.
    std::string script = "exec 9>>'" + path + ".lock'; flock --exclusive 9; echo held >&3; " +
                         "exec 3>&- sleep 30";
    ::execlp("sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(ready[1]);
  char buf[8];
  BOOST_REQUIRE(::read(ready[0], buf, sizeof buf) > 0);
  BOOST_TEST(!path_lock::try_acquire(path).held());
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  BOOST_TEST(path_lock::try_acquire(path).held());
}

BOOST_AUTO_TEST_SUITE_END()
