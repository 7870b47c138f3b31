// start_writeback_tree and fsync_tree open regular files and directories
// only: a FIFO or a device node a build left in its output is never opened
// (inotify sees every open in a watched directory; O_PATH handles are not
// opens).
#include <boost/test/unit_test.hpp>

#include "store/io/file_ops.hpp"
#include "tests/support/test_support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fstream>
#include <set>

using namespace kiln;
using kiln::test::temp_dir;

namespace {

// Names opened in the watched directory since the watch began.
std::set<std::string> opened(int in) {
  std::set<std::string> names;
  alignas(inotify_event) char buf[8192];
  pollfd p{in, POLLIN, 0};
  while (::poll(&p, 1, 100) > 0) {
    ssize_t n = ::read(in, buf, sizeof buf);
    if (n <= 0)
      break;
    for (char* at = buf; at < buf + n;) {
      auto* e = reinterpret_cast<inotify_event*>(at);
      if (e->len)
        names.insert(e->name);
      at += sizeof(inotify_event) + e->len;
    }
  }
  return names;
}

// Builds an output with one of each kind of file and checks which `walk` opens.
void check_opens(void (*walk)(const std::string&)) {
  temp_dir t;
  std::string out = t / "out";
  BOOST_REQUIRE(::mkdir(out.c_str(), 0755) == 0);
  std::ofstream(out + "/file") << "data";
  BOOST_REQUIRE(::mkdir((out + "/sub").c_str(), 0755) == 0);
  std::ofstream(out + "/sub/inner") << "more";
  BOOST_REQUIRE(::mkfifo((out + "/fifo").c_str(), 0644) == 0);
  BOOST_REQUIRE(::symlink("file", (out + "/link").c_str()) == 0);
  bool device = ::mknod((out + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0; // root only

  int in = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  BOOST_REQUIRE(in >= 0);
  BOOST_REQUIRE(::inotify_add_watch(in, out.c_str(), IN_OPEN) >= 0);
  walk(out); // a FIFO opened for reading would block here
  std::set<std::string> names = opened(in);
  ::close(in);

  BOOST_CHECK(names.count("file"));
  BOOST_CHECK(names.count("sub"));
  BOOST_CHECK(!names.count("fifo"));
  BOOST_CHECK(!names.count("link"));
  if (device)
    BOOST_CHECK(!names.count("null"));
}

} // namespace

BOOST_AUTO_TEST_CASE(writeback_opens_only_files_and_directories) {
  check_opens(start_writeback_tree);
}

BOOST_AUTO_TEST_CASE(fsync_opens_only_files_and_directories) {
  check_opens(fsync_tree);
}
