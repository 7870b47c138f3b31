#include <boost/test/unit_test.hpp>

#include "store/io/error.hpp"
#include "store/format/signature.hpp"
#include "tests/support/test_support.hpp"

using namespace kiln;

namespace {

const nlohmann::json& cache() {
  return test::manifest()["binary_cache"];
}

std::string fingerprint_of(const nlohmann::json& info) {
  std::set<std::string> refs = info["references"].get<std::set<std::string>>();
  return path_fingerprint(info["path"].get<std::string>(),
                          parse_hash(info["narHash"].get<std::string>()),
                          info["narSize"].get<uint64_t>(), refs);
}

} // namespace

BOOST_AUTO_TEST_SUITE(signature_tests)

BOOST_AUTO_TEST_CASE(nix_key_files_parse_and_match_each_other) {
  auto sk = read_secret_key_file(test::vectors_dir() + "/keys/secret.key");
  auto pk = read_public_key_file(test::vectors_dir() + "/keys/public.key");
  BOOST_TEST(sk.name == "test-cache-1");
  BOOST_TEST(sk.to_string() == cache()["secret_key"].get<std::string>());
  BOOST_TEST(pk.to_string() == cache()["public_key"].get<std::string>());
  BOOST_TEST(sk.to_public().to_string() == pk.to_string());
}

BOOST_AUTO_TEST_CASE(signs_every_vector_path_exactly_as_nix_did) {
  auto sk = parse_secret_key(cache()["secret_key"].get<std::string>());
  auto pk = parse_public_key(cache()["public_key"].get<std::string>());
  int n = 0;
  for (auto& info : cache()["local_path_info_json_after_nix_store_sign"]) {
    auto fp = fingerprint_of(info);
    auto nix_sig = info["signatures"][0].get<std::string>();
    BOOST_TEST(sk.sign(fp) == nix_sig, info["path"]);
    BOOST_TEST(pk.verify(fp, nix_sig));
    ++n;
  }
  BOOST_TEST(n == 3);
}

BOOST_AUTO_TEST_CASE(fingerprint_has_nix_layout) {
  auto h = parse_hash("sha256-3MEhIkQcAmDvpG+kbU2oejQXb2AUefCRG6bDWMHK5Jg=");
  BOOST_TEST(path_fingerprint("/nix/store/x", h, 744, {"/nix/store/b", "/nix/store/a"}) ==
             "1;/nix/store/x;" + h.to_prefixed(hash_format::base32) + ";744;/nix/store/a,/nix/store/b");
  BOOST_TEST(path_fingerprint("/nix/store/x", h, 1, {}).back() == ';');
  BOOST_CHECK_THROW(path_fingerprint("/nix/store/x", h, 0, {}), error);
  BOOST_CHECK_THROW(path_fingerprint("/nix/store/x", hash_string(hash_algo::sha1, ""), 1, {}), error);
}

BOOST_AUTO_TEST_CASE(verification_fails_for_tampering_and_wrong_keys) {
  auto sk = generate_secret_key("mine-1");
  auto pk = sk.to_public();
  auto sig = sk.sign("message");
  BOOST_TEST(pk.verify("message", sig));
  BOOST_TEST(!pk.verify("messagE", sig));
  auto other = generate_secret_key("mine-1").to_public(); // same name, other key
  BOOST_TEST(!other.verify("message", sig));
  auto renamed = pk;
  renamed.name = "mine-2";
  BOOST_TEST(!renamed.verify("message", sig)); // the signature names another key
  BOOST_TEST(!pk.verify("message", "mine-1:not base64!"));
  BOOST_TEST(!pk.verify("message", "mine-1:AAAA"));

  auto trusted = make_trusted_keys({pk.to_string()});
  BOOST_TEST(has_valid_signature("message", {"x:y", sig}, trusted));
  BOOST_TEST(!has_valid_signature("message", {"x:y"}, trusted));
  BOOST_TEST(!has_valid_signature("message", {sig}, {}));
}

BOOST_AUTO_TEST_CASE(generated_keys_round_trip_through_text) {
  auto sk = generate_secret_key("k");
  BOOST_TEST(parse_secret_key(sk.to_string() + "\n").to_string() == sk.to_string());
  BOOST_TEST(parse_public_key(sk.to_public().to_string()).to_string() == sk.to_public().to_string());
}

BOOST_AUTO_TEST_CASE(refuses_malformed_keys_with_the_reason) {
  auto refuses = [](auto parse, const std::string& text, const std::string& why) {
    try {
      parse(text);
      BOOST_ERROR("accepted key " + text);
    } catch (const format_error& e) {
      BOOST_TEST(std::string(e.what()).find(why) != std::string::npos, e.what());
    }
  };
  refuses(parse_public_key, "no-colon", "not of the form 'name:base64'");
  refuses(parse_public_key, ":AAAA", "not of the form");
  refuses(parse_public_key, "k:!!!!", "invalid base64 character '!'");
  refuses(parse_public_key, "k:AAAA", "has 3 bytes, expected 32");
  refuses(parse_secret_key, cache()["public_key"].get<std::string>(), "has 32 bytes, expected 64");
  auto sk = generate_secret_key("k");
  sk.key[40] ^= 1; // corrupt the public half
  refuses(parse_secret_key, sk.to_string(), "public half does not match its seed");
  BOOST_CHECK_THROW(generate_secret_key("a:b"), format_error);
  BOOST_CHECK_THROW(read_secret_key_file("/nonexistent/key"), sys_error);
}

BOOST_AUTO_TEST_SUITE_END()
