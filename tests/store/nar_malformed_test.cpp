// Every malformed NAR the foundation issue lists, each refused with a clear
// error and nothing left at the destination (or beside it).
#include <boost/test/unit_test.hpp>

#include "store/io/error.hpp"
#include "store/format/nar.hpp"
#include "tests/support/nar_builder.hpp"
#include "tests/support/test_support.hpp"

#include <sys/stat.h>

using namespace kiln;
using test::nar_builder;

namespace {

// Restores `nar` into a fresh directory and checks the refusal: a
// format_error containing `fragment`, no DEST, no staging leftovers.
void refused(const std::string& nar, const std::string& fragment, const nar_limits& limits = {}) {
  test::temp_dir tmp;
  string_source in(nar);
  try {
    restore_nar(in, tmp / "dest", limits);
    BOOST_ERROR("restored a malformed NAR; expected: " + fragment);
  } catch (const format_error& e) {
    std::string msg = e.what();
    BOOST_TEST(msg.find("invalid NAR: at byte ") == 0, msg);
    BOOST_TEST(msg.find(fragment) != std::string::npos, "'" << fragment << "' not in: " << msg);
  }
  BOOST_TEST(test::list_dir(tmp.path()).empty(), "leftovers after a refused restore");
}

nar_builder dir_with(const std::vector<std::string>& names) {
  nar_builder b;
  b.magic().begin_dir();
  for (auto& n : names)
    b.begin_entry(n).file("x").end_entry();
  b.end_dir();
  return b;
}

} // namespace

BOOST_AUTO_TEST_SUITE(nar_malformed)

BOOST_AUTO_TEST_CASE(refuses_bad_magic) {
  refused(nar_builder().str("nix-archive-2").file("x").bytes, "at byte 0: not a NAR (bad magic");
}

BOOST_AUTO_TEST_CASE(refuses_empty_input) {
  refused("", "at byte 0: input ended unexpectedly");
}

BOOST_AUTO_TEST_CASE(refuses_every_truncation_of_a_valid_nar) {
  auto b = dir_with({"a", "b"});
  for (std::size_t cut = 0; cut < b.bytes.size(); cut += 3)
    refused(b.bytes.substr(0, cut), "truncated NAR");
}

BOOST_AUTO_TEST_CASE(refuses_non_zero_padding) {
  auto b = nar_builder().magic().file("abc"); // 3 bytes + 5 padding
  auto at = b.bytes.find("abc") + 4;
  b.bytes[at] = 'X';
  refused(b.bytes, "at byte " + std::to_string(at) + ": non-zero padding byte");
}

BOOST_AUTO_TEST_CASE(refuses_contents_longer_than_the_input) {
  nar_builder b;
  b.magic().str("(").str("type").str("regular").str("contents").u64(1000).bytes += "short";
  refused(b.bytes, "truncated NAR");
}

BOOST_AUTO_TEST_CASE(refuses_absurd_file_length_before_reading_it) {
  nar_builder b;
  b.magic().str("(").str("type").str("regular").str("contents").u64(1ull << 62);
  refused(b.bytes, "claims 4611686018427387904 bytes, more than the limit");
}

BOOST_AUTO_TEST_CASE(refuses_absurd_token_and_name_lengths) {
  refused(nar_builder().magic().u64(~0ull).bytes, "a token is 18446744073709551615 bytes long");
  nar_builder b;
  b.magic().begin_dir().str("entry").str("(").str("name").u64(1ull << 40);
  refused(b.bytes, "an entry name is 1099511627776 bytes long, the limit is 255");
  refused(nar_builder().magic().symlink(std::string(5000, 'a')).bytes,
          "a symlink target is 5000 bytes long, the limit is 4095");
}

BOOST_AUTO_TEST_CASE(refuses_unknown_tokens) {
  refused(nar_builder().magic().str("(").str("type").str("fifo").str(")").bytes,
          "unknown node type 'fifo'");
  refused(nar_builder().magic().str("(").str("kind").bytes, "expected 'type', found 'kind'");
  refused(nar_builder().magic().str("(").str("type").str("regular").str("size").bytes,
          "expected 'contents', found 'size'");
  refused(nar_builder().magic().begin_dir().str("entri").bytes,
          "expected 'entry' or ')', found 'entri'");
  refused(nar_builder().magic().str("(").str("type").str("regular").str("executable").str("yes").bytes,
          "'executable' marker must be followed by an empty string");
}

BOOST_AUTO_TEST_CASE(refuses_empty_entry_name) {
  refused(dir_with({""}).bytes, "empty entry name");
}

BOOST_AUTO_TEST_CASE(refuses_dot_entry_name) {
  refused(dir_with({"."}).bytes, "entry name '.'");
}

BOOST_AUTO_TEST_CASE(refuses_dotdot_entry_name) {
  refused(dir_with({".."}).bytes, "entry name '..'");
}

BOOST_AUTO_TEST_CASE(refuses_entry_name_with_slash) {
  refused(dir_with({"a/b"}).bytes, "entry name 'a/b' contains '/'");
}

BOOST_AUTO_TEST_CASE(refuses_entry_name_with_nul) {
  refused(dir_with({std::string("a\0b", 3)}).bytes, "entry name contains a NUL byte");
}

BOOST_AUTO_TEST_CASE(refuses_entries_out_of_order) {
  refused(dir_with({"b", "a"}).bytes, "entry 'a' out of order (after 'b')");
}

BOOST_AUTO_TEST_CASE(refuses_duplicate_entries) {
  refused(dir_with({"a", "a"}).bytes, "duplicate entry 'a'");
}

nar_builder nested(std::size_t depth) {
  nar_builder b;
  b.magic();
  for (std::size_t i = 0; i < depth; ++i)
    b.begin_dir().begin_entry("d");
  b.file("leaf");
  for (std::size_t i = 0; i < depth; ++i)
    b.end_entry().end_dir();
  return b;
}

BOOST_AUTO_TEST_CASE(refuses_nesting_deeper_than_the_limit) {
  // A small limit, so the restore stays quick (each level is a directory).
  nar_limits limits;
  limits.max_depth = 300;
  test::temp_dir tmp;
  auto at_limit = nested(300);
  string_source in(at_limit.bytes);
  BOOST_CHECK_NO_THROW(restore_nar(in, tmp / "ok", limits)); // exactly at the limit is fine
  refused(nested(301).bytes, "directories nested deeper than 300", limits);

  // The default limit is far above what ordinary paths reach, and a hostile
  // NAR 1,000,000 levels deep costs no stack: the parser stops at the limit.
  BOOST_TEST(nar_limits{}.max_depth == 65536u);
  auto monster = nested(1000000);
  string_source deep(monster.bytes);
  nar_visitor check_only;
  try {
    parse_nar(deep, check_only);
    BOOST_ERROR("parsed a NAR 1,000,000 directories deep");
  } catch (const format_error& e) {
    BOOST_TEST(std::string(e.what()).find("directories nested deeper than 65536") != std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_CASE(refuses_trailing_garbage) {
  auto b = nar_builder().magic().file("x");
  refused(b.bytes + "garbage!", "at byte " + std::to_string(b.bytes.size()) + ": trailing data");
}

BOOST_AUTO_TEST_CASE(refuses_empty_or_nul_symlink_targets) {
  refused(nar_builder().magic().symlink("").bytes, "has an empty target");
  refused(nar_builder().magic().symlink(std::string("a\0b", 3)).bytes, "NUL byte in its target");
}

BOOST_AUTO_TEST_CASE(never_writes_through_a_symlink) {
  // The only way a NAR could aim a write through a symlink is a second
  // entry of the same name below it; that is a duplicate, refused before
  // anything is written, and the symlink's target stays untouched.
  test::temp_dir outside;
  nar_builder b;
  b.magic().begin_dir();
  b.begin_entry("x").symlink(outside.path()).end_entry();
  b.begin_entry("x").begin_dir().begin_entry("planted").file("evil").end_entry().end_dir().end_entry();
  b.end_dir();
  refused(b.bytes, "duplicate entry 'x'");
  BOOST_TEST(test::list_dir(outside.path()).empty());

  // A destination that is itself a symlink is refused, not followed.
  test::temp_dir tmp;
  BOOST_REQUIRE(::symlink(outside.path().c_str(), (tmp / "dest").c_str()) == 0);
  string_source in(nar_builder().magic().begin_dir().begin_entry("f").file("x").end_entry().end_dir().bytes);
  BOOST_CHECK_THROW(restore_nar(in, tmp / "dest"), error);
  BOOST_TEST(test::list_dir(outside.path()).empty());
}

BOOST_AUTO_TEST_SUITE_END()
