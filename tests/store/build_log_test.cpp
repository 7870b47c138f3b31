#include <boost/test/unit_test.hpp>

#include "store/local/build_log.hpp"
#include "store/io/error.hpp"
#include "tests/support/test_support.hpp"

#include <cstdlib>

using namespace kiln;

BOOST_AUTO_TEST_SUITE(build_log_tests)

BOOST_AUTO_TEST_CASE(tail_keeps_the_last_lines_and_handles_carriage_returns) {
  log_tail t(3, true);
  t.feed("one\ntwo\nthr");
  t.feed("ee\nfour\r\n");
  t.feed("10%\r100%\nabc\rX");
  auto lines = t.lines();
  BOOST_TEST(std::vector<std::string>(lines.begin(), lines.end()) ==
                 (std::vector<std::string>{"four", "100%", "Xbc"}),
             boost::test_tools::per_element());
  auto fresh = t.take_finished();
  BOOST_TEST(fresh.size() == 5u); // one two three four 100%
  BOOST_TEST(t.take_finished().empty());
  t.finish();
  BOOST_TEST(t.take_finished().front() == "Xbc");
}

BOOST_AUTO_TEST_CASE(every_compression_round_trips) {
  test::temp_dir dir;
  store_layout layout{dir.path()};
  std::string text;
  for (int i = 0; i < 20000; ++i)
    text += "line " + std::to_string(i) + "\n";
  const char* names[] = {"aaa-x.drv", "bbb-y.drv", "ccc-z.drv"};
  log_compression kinds[] = {log_compression::zstd, log_compression::bzip2, log_compression::none};
  for (int k = 0; k < 3; ++k) {
    {
      build_log_writer w(build_log_path(layout, names[k], kinds[k]), kinds[k]);
      w.write(text.substr(0, 1000));
      w.write(text.substr(1000));
    }
    auto back = read_build_log(layout, names[k]);
    BOOST_REQUIRE(back);
    BOOST_TEST(*back == text);
  }
  BOOST_TEST(build_log_path(layout, "abcdef-x.drv", log_compression::zstd) ==
             dir.path() + "/nix/var/log/nix/drvs/ab/cdef-x.drv.zst");
  // bzip2(1) reads what Nix's `nix log` reads.
  std::string cmd = "bzip2 -t " + build_log_path(layout, names[1], log_compression::bzip2);
  BOOST_TEST(std::system(cmd.c_str()) == 0);
  BOOST_TEST(!read_build_log(layout, "ddd-none.drv"));
}

BOOST_AUTO_TEST_CASE(corrupt_and_truncated_logs_are_errors) {
  test::temp_dir dir;
  store_layout layout{dir.path()};
  std::string path = build_log_path(layout, "aaa-x.drv", log_compression::zstd);
  {
    build_log_writer w(path, log_compression::zstd);
    w.write(std::string(100000, 'x'));
  }
  std::string whole = test::read_file(path);
  test::write_file(path, whole.substr(0, whole.size() / 2));
  BOOST_CHECK_THROW(read_build_log(layout, "aaa-x.drv"), format_error);
  test::write_file(path, "not zstd at all");
  BOOST_CHECK_THROW(read_build_log(layout, "aaa-x.drv"), format_error);
  std::string bz = build_log_path(layout, "bbb-x.drv", log_compression::bzip2);
  { build_log_writer w(bz, log_compression::bzip2); } // makes its directory
  test::write_file(bz, "BZh9 nonsense");
  BOOST_CHECK_THROW(read_build_log(layout, "bbb-x.drv"), format_error);
  BOOST_CHECK_THROW(parse_log_compression("gzip"), format_error);
  BOOST_TEST((parse_log_compression("true") == log_compression::bzip2));
  BOOST_TEST((parse_log_compression("false") == log_compression::none));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(log_tail_bounds)

BOOST_AUTO_TEST_CASE(an_endless_line_keeps_its_start_and_says_how_much_more_there_was) {
  log_tail t(3, false, 16);
  std::string chunk(1000, 'x');
  for (int i = 0; i < 1000; ++i) // a million bytes without a newline
    t.feed(chunk);
  auto partial = t.lines();
  BOOST_TEST_REQUIRE(partial.size() == 1u);
  BOOST_TEST(partial.back() == std::string(16, 'x') + " [999984 more bytes]");
  t.feed("\nshort\n");
  auto done = t.lines();
  BOOST_TEST_REQUIRE(done.size() == 2u);
  BOOST_TEST(done[0] == std::string(16, 'x') + " [999984 more bytes]");
  BOOST_TEST(done[1] == "short"); // the count starts over with each line
}

BOOST_AUTO_TEST_SUITE_END()
