#include <boost/test/unit_test.hpp>

#include "store/local/canonicalise.hpp"
#include "store/io/error.hpp"
#include "store/format/nar.hpp"
#include "tests/support/test_support.hpp"

#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

using namespace kiln;

namespace {

struct stat lstat_of(const std::string& p) {
  struct stat st;
  if (::lstat(p.c_str(), &st) != 0)
    throw_errno("lstat " + p);
  return st;
}

std::string nar_of(const std::string& p) {
  string_sink s;
  dump_path(p, s);
  return s.s;
}

} // namespace

BOOST_AUTO_TEST_SUITE(canonicalise_tests)

BOOST_AUTO_TEST_CASE(sets_read_only_modes_and_mtime_one_everywhere) {
  test::temp_dir tmp;
  std::string t = tmp / "t";
  ::mkdir(t.c_str(), 0777);
  ::mkdir((t + "/sub").c_str(), 0700);
  test::write_file(t + "/sub/exe", "#!", 06777); // setuid, setgid, all bits
  test::write_file(t + "/plain", "p", 01666);    // sticky
  BOOST_REQUIRE(::symlink("plain", (t + "/link").c_str()) == 0);
  std::string before = nar_of(t);

  auto r = canonicalise_path_metadata(t);
  BOOST_TEST(r.objects == 5u);
  BOOST_TEST((lstat_of(t).st_mode & 07777) == 0555u);
  BOOST_TEST((lstat_of(t + "/sub").st_mode & 07777) == 0555u);
  BOOST_TEST((lstat_of(t + "/sub/exe").st_mode & 07777) == 0555u);
  BOOST_TEST((lstat_of(t + "/plain").st_mode & 07777) == 0444u);
  for (auto p : {t, t + "/sub", t + "/sub/exe", t + "/plain", t + "/link"}) {
    BOOST_TEST(lstat_of(p).st_mtime == 1, p);
    BOOST_TEST(lstat_of(p).st_atime == 1, p);
  }
  BOOST_TEST(nar_of(t) == before); // content untouched
}

BOOST_AUTO_TEST_CASE(handles_hard_links_once) {
  test::temp_dir tmp;
  std::string t = tmp / "t";
  ::mkdir(t.c_str(), 0755);
  test::write_file(t + "/a", "same", 0755);
  BOOST_REQUIRE(::link((t + "/a").c_str(), (t + "/b").c_str()) == 0);
  auto r = canonicalise_path_metadata(t);
  BOOST_TEST(r.hard_links_seen == 1u);
  BOOST_TEST((lstat_of(t + "/b").st_mode & 07777) == 0555u);
  BOOST_TEST(lstat_of(t + "/b").st_nlink == 2u);
}

BOOST_AUTO_TEST_CASE(removes_user_extended_attributes) {
  test::temp_dir tmp;
  std::string f = tmp / "f";
  test::write_file(f, "x");
  if (::setxattr(f.c_str(), "user.kiln", "1", 1, 0) != 0) {
    BOOST_TEST_MESSAGE("file system without user xattrs; nothing to check");
    return;
  }
  canonicalise_path_metadata(f);
  BOOST_TEST(::getxattr(f.c_str(), "user.kiln", nullptr, 0) < 0);
}

BOOST_AUTO_TEST_CASE(takes_over_files_of_other_owners_when_root) {
  if (::geteuid() != 0) {
    BOOST_TEST_MESSAGE("not root; ownership change cannot be exercised");
    return;
  }
  test::temp_dir tmp;
  std::string f = tmp / "f";
  test::write_file(f, "x");
  BOOST_REQUIRE(::chown(f.c_str(), 12345, 12345) == 0);
  canonicalise_path_metadata(f);
  BOOST_TEST(lstat_of(f).st_uid == 0u);
}

BOOST_AUTO_TEST_CASE(refuses_device_files_and_fifos) {
  test::temp_dir tmp;
  BOOST_REQUIRE(::mkfifo((tmp / "p").c_str(), 0644) == 0);
  BOOST_CHECK_THROW(canonicalise_path_metadata(tmp / "p"), error);
}

BOOST_AUTO_TEST_SUITE_END()
