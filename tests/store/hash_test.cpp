#include <boost/test/unit_test.hpp>

#include "store/io/error.hpp"
#include "store/format/hash.hpp"
#include "tests/support/test_support.hpp"

using namespace kiln;

namespace {
hash from_hex(hash_algo a, const std::string& hex) {
  auto b = base16_decode(hex);
  return hash::from_bytes(a, b.data(), b.size());
}
} // namespace

BOOST_AUTO_TEST_SUITE(hash_tests)

BOOST_AUTO_TEST_CASE(every_base32_vector_encodes_and_parses_back) {
  auto& cases = test::manifest()["base32"]["cases"];
  BOOST_REQUIRE_GT(cases.size(), 0u);
  for (auto& c : cases) {
    auto algo = parse_hash_algo(c["algo"].get<std::string>());
    auto h = from_hex(algo, c["bytes_hex"]);
    BOOST_TEST(h.base32() == c["nix_base32"].get<std::string>());
    BOOST_TEST(h.to_string(hash_format::base64) == c["base64"].get<std::string>());
    BOOST_TEST(h.to_string(hash_format::sri) == c["sri"].get<std::string>());
    BOOST_TEST(h.to_prefixed(hash_format::base32) == c["prefixed_base32"].get<std::string>());
    BOOST_TEST(h.to_prefixed(hash_format::base16) == c["prefixed_base16"].get<std::string>());
    for (auto key : {"nix_base32", "base64", "sri", "prefixed_base32", "prefixed_base16"})
      BOOST_TEST((parse_hash(c[key].get<std::string>(), algo) == h), key);
  }
}

BOOST_AUTO_TEST_CASE(known_digests_of_empty_and_abc) {
  BOOST_TEST(hash_string(hash_algo::sha256, "").base32() ==
             "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
  BOOST_TEST(hash_string(hash_algo::sha1, "abc").base16() ==
             "a9993e364706816aba3e25717850c26c9cd0d89d");
  BOOST_TEST(hash_string(hash_algo::md5, "abc").base16() == "900150983cd24fb0d6963f7d28e17f72");
  BOOST_TEST(hash_string(hash_algo::sha512, "abc").base16().substr(0, 16) == "ddaf35a193617aba");
}

BOOST_AUTO_TEST_CASE(streaming_in_pieces_equals_one_shot) {
  std::string data;
  for (int i = 0; i < 100000; ++i)
    data += static_cast<char>(i * 7);
  hasher h(hash_algo::sha256);
  for (std::size_t i = 0; i < data.size(); i += 1013)
    h.update(std::string_view(data).substr(i, 1013));
  BOOST_TEST((h.finish() == hash_string(hash_algo::sha256, data)));
}

BOOST_AUTO_TEST_CASE(compress_folds_with_xor) {
  auto h = from_hex(hash_algo::sha256, std::string(62, '0') + "ff");
  auto c = compress_hash(h, 20);
  BOOST_TEST(c[31 % 20] == 0xff);
  BOOST_TEST(c[0] == 0);
}

BOOST_AUTO_TEST_CASE(rejects_wrong_length_with_the_expected_lengths) {
  try {
    parse_hash("sha256:abc");
    BOOST_FAIL("accepted a 3-character digest");
  } catch (const format_error& e) {
    std::string msg = e.what();
    BOOST_TEST(msg.find("64 (base16), 52 (base32) or 44 (base64)") != std::string::npos, msg);
  }
}

BOOST_AUTO_TEST_CASE(rejects_bad_alphabet_naming_the_character) {
  // 'e' is not in Nix's base32 alphabet.
  std::string bad = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c7e";
  try {
    parse_hash("sha256:" + bad);
    BOOST_FAIL("accepted 'e' in base32");
  } catch (const format_error& e) {
    std::string msg = e.what();
    BOOST_TEST(msg.find("'e' at position 51") != std::string::npos, msg);
  }
  BOOST_CHECK_THROW(parse_hash("sha256:" + std::string(63, 'a') + "g"), format_error);
  BOOST_CHECK_THROW(parse_hash("sha256-" + std::string(43, '!') + "="), format_error);
}

BOOST_AUTO_TEST_CASE(rejects_base32_with_bits_beyond_the_digest) {
  // The top character of an md5 base32 string carries only 3 bits (128 = 25*5+3).
  BOOST_CHECK_NO_THROW(nix_base32_decode("7zzzzzzzzzzzzzzzzzzzzzzzzz", 16));
  BOOST_CHECK_THROW(nix_base32_decode("zzzzzzzzzzzzzzzzzzzzzzzzzz", 16), format_error);
}

BOOST_AUTO_TEST_CASE(rejects_unknown_algorithms_and_mismatched_prefixes) {
  BOOST_CHECK_THROW(parse_hash_algo("sha3"), format_error);
  BOOST_CHECK_THROW(parse_hash("blake3:abcd"), format_error);
  auto empty = hash_string(hash_algo::sha256, "").to_prefixed(hash_format::base16);
  BOOST_CHECK_THROW(parse_hash(empty, hash_algo::sha512), format_error);
  BOOST_CHECK_THROW(parse_hash(std::string(64, '0')), format_error); // bare, no algo given
}

BOOST_AUTO_TEST_CASE(base16_accepts_upper_case_and_base64_rejects_misplaced_padding) {
  BOOST_TEST((base16_decode("ABcd") == bytes{0xab, 0xcd}));
  BOOST_CHECK_THROW(base16_decode("abc"), format_error);
  BOOST_CHECK_THROW(base64_decode("A=AA"), format_error);
  BOOST_TEST((base64_decode("AQ==") == bytes{1}));
}

BOOST_AUTO_TEST_SUITE_END()
