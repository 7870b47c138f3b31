#include <boost/test/unit_test.hpp>

#include "store/io/error.hpp"
#include "store/format/references.hpp"
#include "tests/support/test_support.hpp"

#include <random>

using namespace kiln;

namespace {

const std::string h1 = "znyyscdwajc1758rpqhixphdhcs626gn";
const std::string h2 = "3a13s75qmsd8mxm6wi78sklkhma5927c";
const std::string h3 = "6228jcndbnx6gpbcrrh7z7xdikfxkpin";

std::set<std::string> scan_in_chunks(const std::string& data, std::size_t chunk,
                                     const std::set<std::string>& candidates) {
  reference_scanner s(candidates);
  for (std::size_t i = 0; i < data.size(); i += chunk)
    s.write(data.data() + i, std::min(chunk, data.size() - i));
  return s.found();
}

} // namespace

BOOST_AUTO_TEST_SUITE(references_tests)

BOOST_AUTO_TEST_CASE(finds_hash_parts_in_binary_and_text) {
  std::string data = std::string("\0\1\2/nix/store/", 14) + h1 + "-foo\n" + std::string(100, '\xff') + h2;
  BOOST_TEST((scan_in_chunks(data, data.size(), {h1, h2, h3}) == std::set<std::string>{h1, h2}));
}

BOOST_AUTO_TEST_CASE(finds_a_hash_split_across_every_chunk_boundary) {
  std::string data = std::string(50, '!') + h1 + std::string(50, '!');
  for (std::size_t chunk = 1; chunk <= 40; ++chunk)
    BOOST_TEST((scan_in_chunks(data, chunk, {h1}) == std::set<std::string>{h1}), "chunk " << chunk);
}

BOOST_AUTO_TEST_CASE(finds_hashes_inside_long_base32_runs) {
  // Surrounded by base32 characters, the hash is only a substring of a run.
  std::string data = "abcdfg" + h2 + "0123" + h3 + "zz";
  for (std::size_t chunk : {1, 7, 31, 32, 33, 1000})
    BOOST_TEST((scan_in_chunks(data, chunk, {h2, h3}) == std::set<std::string>{h2, h3}), chunk);
}

BOOST_AUTO_TEST_CASE(ignores_near_misses_and_non_candidates) {
  std::string almost = h1;
  almost[31] = almost[31] == '0' ? '1' : '0';
  std::string data = almost + " " + h1.substr(0, 31) + " " + h3;
  BOOST_TEST(scan_in_chunks(data, 5, {h1, h2}).empty());
}

BOOST_AUTO_TEST_CASE(agrees_with_naive_search_on_random_data) {
  std::mt19937_64 rng(42);
  std::set<std::string> candidates;
  std::vector<std::string> list;
  for (int i = 0; i < 200; ++i) {
    std::string h;
    for (int k = 0; k < 32; ++k)
      h += nix_base32_alphabet[rng() % 32];
    candidates.insert(h);
    list.push_back(h);
  }
  for (int round = 0; round < 20; ++round) {
    std::string data;
    for (int k = 0; k < 20000; ++k) // mostly base32 text, to stress the slow path
      data += rng() % 10 == 0 ? static_cast<char>(rng() % 256) : nix_base32_alphabet[rng() % 32];
    for (int k = 0; k < 5; ++k)
      data.insert(rng() % data.size(), list[rng() % list.size()]);
    std::set<std::string> naive;
    for (auto& c : candidates)
      if (data.find(c) != std::string::npos)
        naive.insert(c);
    BOOST_TEST((scan_in_chunks(data, 1 + rng() % 5000, candidates) == naive));
  }
}

BOOST_AUTO_TEST_CASE(scans_a_tree_including_names_and_symlink_targets) {
  test::temp_dir tmp;
  test::make_tree(nlohmann::json::parse(R"({"type":"directory","entries":{
      "name-)" + h1 + R"(": {"type":"regular","contents":{"text":"x"}},
      "link": {"type":"symlink","target":"/nix/store/)" + h2 + R"(-y"},
      "file": {"type":"regular","contents":{"text":"nothing here"}}}})"), tmp / "t");
  BOOST_TEST((scan_path_for_references(tmp / "t", {h1, h2, h3}) == std::set<std::string>{h1, h2}));
}

BOOST_AUTO_TEST_CASE(refuses_malformed_candidates) {
  BOOST_CHECK_THROW(reference_scanner({"short"}), error);
  BOOST_CHECK_THROW(reference_scanner({std::string(32, 'e')}), error);
}

BOOST_AUTO_TEST_SUITE_END()
