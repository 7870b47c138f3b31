// Each way a .drv can be malformed, refused with the byte offset and what
// was expected there.
#include <boost/test/unit_test.hpp>

#include "store/format/derivation.hpp"
#include "store/format/derivation_hash.hpp"
#include "store/io/error.hpp"

using namespace kiln;

namespace {

const std::string out_path = "/nix/store/znyyscdwajc1758rpqhixphdhcs626gn-trivial";
const std::string good = "Derive([(\"out\",\"" + out_path +
                         "\",\"\",\"\")],[],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"a\",\"b\")])";

void refuses(const std::string& text, const std::string& fragment) {
  try {
    parse_derivation(text, "test.drv");
    BOOST_ERROR("accepted: " + text);
  } catch (const format_error& e) {
    std::string msg = e.what();
    BOOST_TEST(msg.find("test.drv: at byte ") == 0, msg);
    BOOST_TEST(msg.find(fragment) != std::string::npos, "'" << fragment << "' not in: " << msg);
  }
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  s.replace(s.find(from), from.size(), to);
  return s;
}

} // namespace

BOOST_AUTO_TEST_SUITE(derivation_malformed)

BOOST_AUTO_TEST_CASE(the_well_formed_baseline_parses) {
  BOOST_CHECK_NO_THROW(parse_derivation(good));
}

BOOST_AUTO_TEST_CASE(refuses_empty_input) {
  refuses("", "at byte 0: expected 'Derive(', found end of input");
}

BOOST_AUTO_TEST_CASE(refuses_wrong_keyword) {
  refuses("Derivation(", "at byte 0: expected 'Derive('");
}

BOOST_AUTO_TEST_CASE(refuses_truncation_inside_a_string) {
  refuses(good.substr(0, 20), "expected '\"' (end of the string), found end of input");
}

BOOST_AUTO_TEST_CASE(refuses_missing_comma_with_its_offset) {
  refuses(replace(good, "\"x86_64-linux\",", "\"x86_64-linux\""),
          "at byte " + std::to_string(good.find("\"/bin/sh\"") - 1) + ": expected ','");
}

BOOST_AUTO_TEST_CASE(refuses_output_path_outside_the_store) {
  refuses(replace(good, out_path, "/tmp/x"), "path of output 'out': path '/tmp/x' is not in the Nix store");
}

BOOST_AUTO_TEST_CASE(refuses_input_derivation_that_is_not_a_drv) {
  refuses(replace(good, "],[],[],", "],[(\"" + out_path + "\",[\"out\"])],[],"),
          "is not a .drv path");
}

BOOST_AUTO_TEST_CASE(refuses_input_source_with_a_bad_hash) {
  refuses(replace(good, "],[],\"x86", "],[\"/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x\"],\"x86"),
          "input source: store path");
}

BOOST_AUTO_TEST_CASE(refuses_duplicate_outputs) {
  std::string o = "(\"out\",\"" + out_path + "\",\"\",\"\")";
  refuses(replace(good, o, o + "," + o), "duplicate output 'out'");
}

BOOST_AUTO_TEST_CASE(refuses_duplicate_environment_variables) {
  refuses(replace(good, "(\"a\",\"b\")", "(\"a\",\"b\"),(\"a\",\"c\")"),
          "duplicate environment variable");
}

BOOST_AUTO_TEST_CASE(refuses_a_derivation_without_outputs) {
  refuses(replace(good, "[(\"out\",\"" + out_path + "\",\"\",\"\")]", "[]"), "has no outputs");
}

BOOST_AUTO_TEST_CASE(refuses_trailing_bytes) {
  refuses(good + "\n", "at byte " + std::to_string(good.size()) + ": expected end of input");
}

BOOST_AUTO_TEST_CASE(refuses_malformed_fixed_output_hashes) {
  refuses(replace(good, "\"\",\"\")]", "\"sha256\",\"abc\")]"), "not a base16 sha256 digest");
  refuses(replace(good, "\"\",\"\")]", "\"sha3\",\"abc\")]"), "unknown hash algorithm 'sha3'");
  refuses(replace(good, "\"\",\"\")]", "\"r:sha1\",\"" + std::string(40, 'g') + "\")]"),
          "invalid base16 character 'g'");
}

BOOST_AUTO_TEST_CASE(refuses_an_unterminated_list) {
  refuses(good.substr(0, good.find("[(\"a\"")) + "[(\"a\",\"b\")", "expected ']'");
}

BOOST_AUTO_TEST_CASE(derivation_name_comes_from_the_file_or_the_env) {
  auto d = parse_derivation(good);
  BOOST_TEST(derivation_name(d, "/x/3a13s75qmsd8mxm6wi78sklkhma5927c-trivial.drv") == "trivial");
  BOOST_CHECK_THROW(derivation_name(d, "/x/plain.drv"), format_error);
  d.env["name"] = "from-env";
  BOOST_TEST(derivation_name(d, "/x/plain.drv") == "from-env");
  d.env["name"] = "bad name";
  BOOST_CHECK_THROW(derivation_name(d, "/x/plain.drv"), format_error);
}

BOOST_AUTO_TEST_CASE(hashing_refuses_a_cycle_in_the_input_graph) {
  const std::string a = "/nix/store/00000000000000000000000000000000-a.drv";
  const std::string b = "/nix/store/11111111111111111111111111111111-b.drv";
  auto with_input = [&](const std::string& in) {
    auto d = parse_derivation(good);
    d.input_drvs[in] = {"out"};
    return d;
  };
  derivation_hasher hasher([&](const std::string& p) { return with_input(p == a ? b : a); });
  try {
    hasher.input_hash(a);
    BOOST_ERROR("a cycle was hashed");
  } catch (const format_error& e) {
    BOOST_TEST(std::string(e.what()).find("cycle") != std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_CASE(hashing_refuses_a_missing_wanted_output) {
  const std::string in = "/nix/store/00000000000000000000000000000000-in.drv";
  auto d = parse_derivation(good);
  d.input_drvs[in] = {"dev"};
  derivation_hasher hasher([&](const std::string&) { return parse_derivation(good); });
  BOOST_CHECK_THROW(hasher.hash_modulo(d, true), format_error);
}

BOOST_AUTO_TEST_CASE(a_missing_input_file_is_named) {
  auto d = parse_derivation(good);
  d.input_drvs["/nix/store/00000000000000000000000000000000-gone.drv"] = {"out"};
  derivation_hasher hasher(directory_loader("/nonexistent-dir"));
  try {
    hasher.hash_modulo(d, true);
    BOOST_ERROR("hashed with a missing input");
  } catch (const error& e) {
    BOOST_TEST(std::string(e.what()).find("00000000000000000000000000000000-gone.drv") !=
               std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_SUITE_END()
