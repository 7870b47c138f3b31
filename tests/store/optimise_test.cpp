#include <boost/test/unit_test.hpp>

#include "store/optimise.hpp"
#include "store/verify.hpp"
#include "tests/support/test_support.hpp"

#include <sys/stat.h>

using namespace kiln;

namespace {

struct stat stat_of(const std::string& p) {
  struct stat st;
  BOOST_REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st;
}

} // namespace

BOOST_AUTO_TEST_SUITE(optimise_tests)

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
