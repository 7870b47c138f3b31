#include <boost/test/unit_test.hpp>

#include "store/io/error.hpp"
#include "store/export.hpp"
#include "tests/support/nar_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace kiln;

namespace {

struct fixture {
  test::temp_dir tmp;
  local_store store{store_layout{tmp / "root"}};
  std::string vector = test::read_file(test::vectors_dir() + "/export/a-b.export");
  const nlohmann::json& entries = test::manifest()["export"]["entries"];

  // The imported paths; a refused one is an error here.
  std::vector<store_path> import_bytes(const std::string& bytes) {
    string_source in(bytes);
    auto r = import_paths(store, in, store.layout().kiln_dir());
    if (!r.refused.empty())
      throw error(r.refused.front().second);
    return r.imported;
  }
  // Bytes of the vector's first entry: marker, NAR, NIXE, path, no
  // references, deriver, signature flag (strings padded to 8).
  std::size_t first_entry_size() const {
    auto padded = [](std::size_t n) { return 8 + (n + 7) / 8 * 8; };
    auto& e = entries[0];
    return 8 + e["nar_size"].get<std::size_t>() + 8 + padded(e["path"].get<std::string>().size()) +
           8 + padded(e["deriver"].get<std::string>().size()) + 8;
  }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(export_tests, fixture)

BOOST_AUTO_TEST_CASE(imports_the_nix_export_with_its_metadata) {
  auto imported = import_bytes(vector);
  BOOST_REQUIRE_EQUAL(imported.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    auto& e = entries[i];
    BOOST_TEST(imported[i].full() == e["path"].get<std::string>());
    auto info = store.db().query_path_info(imported[i]);
    BOOST_TEST(info->nar_hash.base16() == e["nar_sha256_base16"].get<std::string>());
    BOOST_TEST(info->nar_size == e["nar_size"].get<uint64_t>());
    BOOST_TEST(info->deriver->full() == e["deriver"].get<std::string>());
    std::set<std::string> refs;
    for (auto& r : info->references)
      refs.insert(r.full());
    BOOST_TEST((refs == e["references"].get<std::set<std::string>>()));
  }
}

BOOST_AUTO_TEST_CASE(re_exports_byte_for_byte_what_nix_exported) {
  auto imported = import_bytes(vector);
  string_sink out;
  export_paths(store, imported, out);
  BOOST_TEST(out.s == vector);
}

BOOST_AUTO_TEST_CASE(refuses_a_referrer_before_its_reference_and_goes_on_with_the_rest) {
  // Swap nothing but the order: entry 2 (mid, which refers to leaf) first.
  std::size_t second = first_entry_size();
  std::string body = vector.substr(0, vector.size() - 8); // without the final 0
  std::string stream = body.substr(second) + body.substr(0, second) + std::string(8, '\0');
  string_source in(stream);
  auto r = import_paths(store, in, store.layout().kiln_dir());
  BOOST_TEST_REQUIRE(r.refused.size() == 1u);
  BOOST_TEST(r.refused[0].second.find("cache-leaf' is not valid") != std::string::npos, r.refused[0].second);
  BOOST_TEST(r.imported.size() == 1u); // the leaf, after it
  BOOST_TEST(store.db().query_all_valid_paths() == r.imported);
  BOOST_TEST(!store.db().is_valid(r.refused[0].first));
}

BOOST_AUTO_TEST_CASE(refuses_malformed_streams_clearly) {
  auto refuses = [&](const std::string& bytes, const std::string& why) {
    try {
      import_bytes(bytes);
      BOOST_ERROR("imported a malformed stream; expected: " + why);
    } catch (const error& e) {
      BOOST_TEST(std::string(e.what()).find(why) != std::string::npos, e.what());
    }
  };
  refuses(std::string("\x07\0\0\0\0\0\0\0", 8), "entry 1 starts with 7");
  refuses("", "truncated");
  refuses(vector.substr(0, 100), "entry 1: invalid NAR");
  std::string no_magic = vector;
  no_magic[8 + 120] ^= 1;
  refuses(no_magic, "missing the NIXE marker");
  std::string bad_path = vector;
  auto at = bad_path.find("/nix/store/y3gig");
  bad_path[at + 11] = 'e'; // not base32
  refuses(bad_path, "invalid hash character 'e'");
  BOOST_TEST(store.db().query_all_valid_paths().empty());
}

BOOST_AUTO_TEST_CASE(accepts_and_ignores_a_legacy_signature) {
  test::nar_builder nar;
  nar.magic().file("signed");
  test::nar_builder b;
  b.u64(1);
  b.bytes += nar.bytes;
  b.u64(0x4558494e).str("/nix/store/00000000000000000000000000000000-signed").u64(0).str("");
  b.u64(1).str("legacy signature bytes").u64(0);
  auto imported = import_bytes(b.bytes);
  BOOST_TEST(imported.size() == 1u);
  BOOST_TEST(store.db().query_path_info(imported[0])->nar_size == nar.bytes.size());
}

BOOST_AUTO_TEST_SUITE_END()
