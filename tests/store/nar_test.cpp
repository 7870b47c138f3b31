#include <boost/test/unit_test.hpp>

#include "store/io/error.hpp"
#include "store/format/nar.hpp"
#include "store/format/nar_listing.hpp"
#include "tests/support/nar_builder.hpp"
#include "tests/support/test_support.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

using namespace kiln;

namespace {

std::string dump(const std::string& path) {
  string_sink s;
  dump_path(path, s);
  return s.s;
}

const nlohmann::json& cases() {
  return test::manifest()["nar"]["cases"];
}

} // namespace

BOOST_AUTO_TEST_SUITE(nar_tests)

BOOST_AUTO_TEST_CASE(every_vector_tree_dumps_to_the_nix_bytes_and_hash) {
  BOOST_REQUIRE_GE(cases().size(), 12u);
  test::temp_dir tmp;
  for (auto& c : cases()) {
    std::string name = c["case"], root = tmp / name;
    test::make_tree(c["tree"], root);
    std::string expect = test::read_file(test::vectors_dir() + "/" + c["nar_file"].get<std::string>());
    BOOST_TEST(dump(root) == expect, name);
    hash_sink h(hash_algo::sha256);
    dump_path(root, h);
    BOOST_TEST(h.size() == c["nar_size"].get<uint64_t>(), name);
    BOOST_TEST(h.finish().base32() == c["nar_sha256_base32"].get<std::string>(), name);
  }
}

BOOST_AUTO_TEST_CASE(every_vector_nar_restores_to_a_tree_that_dumps_identically) {
  test::temp_dir tmp;
  for (auto& c : cases()) {
    std::string name = c["case"], dest = tmp / name;
    std::string nar = test::read_file(test::vectors_dir() + "/" + c["nar_file"].get<std::string>());
    string_source in(nar);
    restore_nar(in, dest);
    BOOST_TEST(dump(dest) == nar, name);
  }
  // Only the restored trees remain: no staging directories.
  for (auto& entry : test::list_dir(tmp.path()))
    BOOST_TEST(entry.find(".kiln-restore") == std::string::npos, entry);
}

BOOST_AUTO_TEST_CASE(restore_keeps_the_executable_bit_and_symlink_targets) {
  test::temp_dir tmp;
  test::nar_builder b;
  b.magic().begin_dir();
  b.begin_entry("bin").file("#!/bin/sh\n", true).end_entry();
  b.begin_entry("link").symlink("../elsewhere").end_entry();
  b.begin_entry("plain").file("x").end_entry();
  b.end_dir();
  string_source in(b.bytes);
  restore_nar(in, tmp / "t");
  struct stat st;
  BOOST_REQUIRE(::stat((tmp / "t/bin").c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & S_IXUSR) != 0);
  BOOST_REQUIRE(::stat((tmp / "t/plain").c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & S_IXUSR) == 0);
  char target[64] = {};
  BOOST_TEST(::readlink((tmp / "t/link").c_str(), target, sizeof target - 1) == 12);
  BOOST_TEST(std::string(target) == "../elsewhere");
}

BOOST_AUTO_TEST_CASE(listing_reports_types_sizes_and_offsets) {
  test::nar_builder b;
  b.magic().begin_dir();
  b.begin_entry("a").file("hello", true).end_entry();
  b.begin_entry("l").symlink("a").end_entry();
  b.end_dir();
  string_source in(b.bytes);
  auto j = nlohmann::json::parse(nar_listing_json(in));
  BOOST_TEST(j["type"] == "directory");
  BOOST_TEST(j["entries"].size() == 2u);
  auto& a = j["entries"]["a"];
  BOOST_TEST(a["type"] == "regular");
  BOOST_TEST(a["size"].get<uint64_t>() == 5u);
  BOOST_TEST(a["executable"] == true);
  BOOST_TEST(b.bytes.substr(a["narOffset"].get<uint64_t>(), 5) == "hello");
  BOOST_TEST(j["entries"]["l"]["type"] == "symlink");
  BOOST_TEST(j["entries"]["l"]["target"] == "a");
  string_source again(b.bytes);
  auto text = nar_listing_text(again);
  BOOST_TEST(text == "dr-xr-xr-x            0 .\n-r-xr-xr-x            5 ./a\nlrwxrwxrwx            0 ./l -> a\n", text);
}

BOOST_AUTO_TEST_CASE(dump_refuses_fifos_and_sockets_naming_them) {
  test::temp_dir tmp;
  ::mkdir((tmp / "d").c_str(), 0755);
  BOOST_REQUIRE(::mkfifo((tmp / "d/fifo").c_str(), 0644) == 0);
  try {
    dump(tmp / "d");
    BOOST_ERROR("dumped a fifo");
  } catch (const error& e) {
    BOOST_TEST(std::string(e.what()).find("d/fifo' has an unsupported type") != std::string::npos, e.what());
  }
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string sock = tmp / "sock";
  sock.copy(addr.sun_path, sizeof addr.sun_path - 1);
  BOOST_REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  BOOST_CHECK_THROW(dump(sock), error);
  ::close(s);
}

BOOST_AUTO_TEST_CASE(restore_refuses_an_existing_destination_and_leaves_it_alone) {
  test::temp_dir tmp;
  test::write_file(tmp / "there", "keep me");
  test::nar_builder b;
  b.magic().file("new");
  string_source in(b.bytes);
  BOOST_CHECK_THROW(restore_nar(in, tmp / "there"), error);
  BOOST_TEST(test::read_file(tmp / "there") == "keep me");
}

BOOST_AUTO_TEST_CASE(dump_of_a_string_equals_dump_of_the_same_file) {
  test::temp_dir tmp;
  test::write_file(tmp / "f", "some bytes", 0755);
  string_sink s;
  dump_string_as_file("some bytes", true, s);
  BOOST_TEST(s.s == dump(tmp / "f"));
}

BOOST_AUTO_TEST_CASE(export_streams_can_carry_a_nar_followed_by_more_data) {
  test::nar_builder b;
  b.magic().file("abc");
  std::string stream = b.bytes + "NEXT";
  string_source in(stream);
  nar_visitor v; // checks only
  BOOST_TEST(parse_nar(in, v, false) == b.bytes.size());
  char rest[8] = {};
  BOOST_TEST(in.read(rest, 8) == 4u);
  BOOST_TEST(std::string(rest) == "NEXT");
}

BOOST_AUTO_TEST_SUITE_END()
