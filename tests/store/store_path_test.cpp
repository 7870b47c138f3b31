#include <boost/test/unit_test.hpp>

#include "store/io/error.hpp"
#include "store/format/nar.hpp"
#include "store/format/store_path.hpp"
#include "tests/support/test_support.hpp"

using namespace kiln;

namespace {

hash sha256_hex(const std::string& hex) {
  auto b = base16_decode(hex);
  return hash::from_bytes(hash_algo::sha256, b.data(), b.size());
}

// Splits "type:sha256:<hex>:/nix/store:name" (type may itself hold colons).
store_path path_from_fingerprint(const std::string& fp) {
  auto at = fp.find(":sha256:");
  std::string type = fp.substr(0, at);
  std::string rest = fp.substr(at + 8);
  std::string hex = rest.substr(0, 64);
  std::string name = rest.substr(64 + 1 + default_store_dir.size() + 1);
  BOOST_TEST(store_path_fingerprint(type, sha256_hex(hex), name) == fp);
  return make_store_path(type, sha256_hex(hex), name);
}

} // namespace

BOOST_AUTO_TEST_SUITE(store_path_tests)

BOOST_AUTO_TEST_CASE(every_derivation_fingerprint_gives_nix_path) {
  int n = 0;
  for (auto& c : test::manifest()["derivations"]["cases"])
    for (auto& fp : c["store_path_fingerprints"]) {
      std::string s = fp["string"];
      if (fp.contains("sha256_base16")) // an inner "fixed:out:..." string
        BOOST_TEST(hash_string(hash_algo::sha256, s).base16() == fp["sha256_base16"].get<std::string>());
      else
        BOOST_TEST(path_from_fingerprint(s).full() == fp["path"].get<std::string>());
      ++n;
    }
  BOOST_TEST(n > 20);
}

BOOST_AUTO_TEST_CASE(source_and_flat_fixed_paths_match_nix_for_every_nar_vector) {
  for (auto& c : test::manifest()["nar"]["cases"]) {
    std::string name = c["case"];
    auto nar_hash = sha256_hex(c["nar_sha256_base16"]);
    BOOST_TEST(make_source_path(name, nar_hash, {}).full() ==
               c["store_path_if_added"].get<std::string>());
    BOOST_TEST(make_fixed_output_path(name, ingestion_method::recursive, nar_hash).full() ==
               c["store_path_if_added"].get<std::string>());
    if (c.contains("fixed_output_flat_sha256_path"))
      BOOST_TEST(make_fixed_output_path(name, ingestion_method::flat,
                                        sha256_hex(c["flat_sha256_base16"]))
                   .full() == c["fixed_output_flat_sha256_path"].get<std::string>());
  }
}

BOOST_AUTO_TEST_CASE(evaluator_sources_get_nix_paths) {
  test::temp_dir tmp;
  int n = 0;
  for (auto& src : test::manifest()["derivations"]["sources"]) {
    std::string name = src["name"];
    store_path_set refs;
    for (auto& r : src.value("references", nlohmann::json::array()))
      refs.insert(parse_store_path(r.get<std::string>()));
    store_path got = src.contains("tree")
      ? [&] {
          test::make_tree(src["tree"], tmp / name);
          hash_sink h(hash_algo::sha256);
          dump_path(tmp / name, h);
          BOOST_TEST(h.size() == src["nar_size"].get<uint64_t>());
          return make_source_path(name, h.finish(), refs);
        }()
      : make_text_path(name, hash_string(hash_algo::sha256, src["contents"].get<std::string>()), refs);
    BOOST_TEST(got.full() == src["store_path"].get<std::string>(), name);
    ++n;
  }
  BOOST_TEST(n >= 3);
}

BOOST_AUTO_TEST_CASE(text_path_with_references_lists_them_in_the_type) {
  auto ref = parse_store_path("/nix/store/ij3gw72f4n5z4dz6nnzl1731p9kmjbwr-empty-file");
  auto h = hash_string(hash_algo::sha256, "hello");
  auto with = make_text_path("note.txt", h, {ref});
  auto without = make_text_path("note.txt", h, {});
  BOOST_TEST(with.full() != without.full());
  BOOST_TEST(with.full() ==
             make_store_path("text:" + ref.full(), h, "note.txt").full());
}

BOOST_AUTO_TEST_CASE(parses_and_splits_a_store_path) {
  auto p = parse_store_path("/nix/store/znyyscdwajc1758rpqhixphdhcs626gn-trivial");
  BOOST_TEST(p.hash_part() == "znyyscdwajc1758rpqhixphdhcs626gn");
  BOOST_TEST(p.name() == "trivial");
  BOOST_TEST(!p.is_derivation());
  BOOST_TEST(parse_store_path("/nix/store/3a13s75qmsd8mxm6wi78sklkhma5927c-trivial.drv").is_derivation());
  BOOST_TEST(parse_store_path("/tmp/s/znyyscdwajc1758rpqhixphdhcs626gn-x", "/tmp/s").name() == "x");
}

BOOST_AUTO_TEST_CASE(refuses_invalid_store_paths_with_the_reason) {
  auto refuses = [](const std::string& p, const std::string& why) {
    try {
      parse_store_path(p);
      BOOST_ERROR("accepted " + p);
    } catch (const format_error& e) {
      BOOST_TEST(std::string(e.what()).find(why) != std::string::npos, e.what());
    }
  };
  refuses("/nix/stor/znyyscdwajc1758rpqhixphdhcs626gn-trivial", "not in the Nix store");
  refuses("/nix/store/znyyscdwajc1758rpqhixphdhcs626gn-trivial/bin", "inside a store path");
  refuses("/nix/store/znyyscdwajc1758rpqhixphdhcs626g-trivial", "not a store path base name");
  refuses("/nix/store/znyyscdwajc1758rpqhixphdhcs626ge-trivial", "invalid hash character 'e'");
  refuses("/nix/store/znyyscdwajc1758rpqhixphdhcs626gn-", "not a store path base name");
  refuses("/nix/store/znyyscdwajc1758rpqhixphdhcs626gn-a b", "invalid character ' '");
  refuses("/nix/store/znyyscdwajc1758rpqhixphdhcs626gn-" + std::string(212, 'a'), "limit is 211");
}

BOOST_AUTO_TEST_CASE(name_rules_allow_exactly_the_nix_characters) {
  BOOST_CHECK_NO_THROW(check_store_path_name("A-z_0.9+?="));
  BOOST_CHECK_NO_THROW(check_store_path_name(std::string(211, 'x')));
  for (char c : std::string("/\\ :@#$%^&*()[]{}!~`'\"<>,;|\n"))
    BOOST_CHECK_THROW(check_store_path_name(std::string("a") + c), format_error);
  BOOST_CHECK_THROW(check_store_path_name(""), format_error);
}

BOOST_AUTO_TEST_CASE(output_path_names_suffix_non_default_outputs) {
  BOOST_TEST(output_path_name("multi", "out") == "multi");
  BOOST_TEST(output_path_name("multi", "dev") == "multi-dev");
}

BOOST_AUTO_TEST_CASE(content_address_strings_use_base32) {
  auto h = hash_string(hash_algo::sha256, "");
  BOOST_TEST(fixed_output_ca(ingestion_method::recursive, h) ==
             "fixed:r:sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
  BOOST_TEST(fixed_output_ca(ingestion_method::flat, h).rfind("fixed:sha256:", 0) == 0);
  BOOST_TEST(text_ca(h).rfind("text:sha256:", 0) == 0);
}

BOOST_AUTO_TEST_SUITE_END()
