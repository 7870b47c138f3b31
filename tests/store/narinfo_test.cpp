// narinfo and nix-cache-info against the caches Nix 2.8 wrote in the
// vectors (one closure, four compressions, signed): each parses, prints
// back to Nix's bytes, points at its NAR file with the right hash and
// size, and carries a signature the vectors' key verifies. Then hostile
// narinfos, each refused naming the line and field.
#include "store/format/narinfo.hpp"
#include "store/format/signature.hpp"
#include "store/io/error.hpp"
#include "store/local/verify.hpp"
#include "tests/support/test_support.hpp"

#include <boost/test/unit_test.hpp>

using namespace kiln;

namespace {

const std::string good =
    "StorePath: /nix/store/bvcqpxh9hzngg188v462xq2nm5a7qizx-cache-mid\n"
    "URL: nar/0zsxkfbqinxd096bqx5l3rj40026msdzl6dx8rda6nijj3fa9bv8.nar.xz\n"
    "Compression: xz\n"
    "FileHash: sha256:0zsxkfbqinxd096bqx5l3rj40026msdzl6dx8rda6nijj3fa9bv8\n"
    "FileSize: 240\n"
    "NarHash: sha256:0yxqkx4j9w9kl5iav2q32fmhkr3i804dd8wm88pn2skkbj21xnnz\n"
    "NarSize: 576\n"
    "References: y3gigz3mcqsw9cwvprxchfxbpsypkqmc-cache-leaf\n"
    "Deriver: k96nyqbi8qjl3jnbvnv4bn756y3kx28k-cache-mid.drv\n";

std::string replace_line(const std::string& text, const std::string& key, const std::string& line) {
  auto at = text.find(key + ": ");
  auto end = text.find('\n', at);
  return text.substr(0, at) + line + text.substr(end);
}

void refused(const std::string& text, const std::string& fragment) {
  BOOST_CHECK_EXCEPTION(parse_narinfo(text, "test.narinfo"), format_error, test::mentions(fragment));
}

} // namespace

BOOST_AUTO_TEST_SUITE(narinfo_tests)

BOOST_AUTO_TEST_CASE(every_cache_nix_wrote_reads_back_to_its_bytes_and_verifies) {
  std::string root = test::vectors_dir() + "/cache";
  auto trusted = make_trusted_keys({test::read_file(test::vectors_dir() + "/keys/public.key")});
  std::size_t seen = 0;
  for (auto& compression : {"none", "xz", "bzip2", "zstd"}) {
    std::string dir = root + "/" + compression;
    cache_info c = parse_cache_info(test::read_file(dir + "/nix-cache-info"), dir);
    BOOST_TEST(c.store_dir == "/nix/store");
    for (auto& name : test::list_dir(dir)) {
      if (name.size() < 8 || name.substr(name.size() - 8) != ".narinfo")
        continue;
      BOOST_TEST_CONTEXT(compression << "/" << name) {
        std::string text = test::read_file(dir + "/" + name);
        narinfo n = parse_narinfo(text, name);
        BOOST_TEST(print_narinfo(n) == text);
        BOOST_TEST(name == std::string(n.path.hash_part()) + ".narinfo");
        BOOST_TEST(n.compression == compression);
        std::string file = test::read_file(dir + "/" + n.url);
        BOOST_TEST(file.size() == n.file_size);
        BOOST_TEST((hash_string(hash_algo::sha256, file) == *n.file_hash));
        BOOST_TEST(has_valid_signature(fingerprint_of(n.info()), n.sigs, trusted));
        ++seen;
      }
    }
  }
  BOOST_TEST(seen == 12u);
}

BOOST_AUTO_TEST_CASE(what_nix_leaves_out_takes_nixs_defaults) {
  narinfo n = parse_narinfo(
      replace_line(replace_line(good, "Compression", "X-Unknown: kept quiet"), "Deriver", "Deriver: unknown-deriver"),
      "t");
  BOOST_TEST(n.compression == "bzip2"); // Nix's default when the line is missing
  BOOST_TEST(!n.deriver.has_value());
  cache_info c = parse_cache_info("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n", "c");
  BOOST_TEST(c.want_mass_query);
  BOOST_TEST(c.priority == 40);
}

BOOST_AUTO_TEST_CASE(a_hostile_narinfo_is_refused_naming_line_and_field) {
  refused(good + "Deriver: k96nyqbi8qjl3jnbvnv4bn756y3kx28k-cache-mid.drv\n", "line 10: Deriver is given twice");
  refused(replace_line(good, "StorePath", "StorePath: /tmp/evil"), "line 1, StorePath: ");
  refused(replace_line(good, "URL", "URL: nar/../../etc/passwd"), "line 2, URL: 'nar/../../etc/passwd' leaves the cache");
  refused(replace_line(good, "NarHash", "NarHash: sha256:zzz"), "line 6, NarHash: ");
  refused(replace_line(good, "NarSize", "NarSize: 0"), "line 7, NarSize: a NAR is never empty");
  refused(replace_line(good, "NarSize", "NarSize: 12x"), "line 7, NarSize: '12x' is not a size in bytes");
  refused(replace_line(good, "FileSize", "FileSize: -1"), "line 5, FileSize: '-1' is not a size in bytes");
  refused(replace_line(good, "References", "References: ../../etc"), "line 8, References: '../../etc' is not");
  refused(replace_line(good, "References", "References: /nix/store/y3gigz3mcqsw9cwvprxchfxbpsypkqmc-cache-leaf"),
          "line 8, References: ");
  refused(replace_line(good, "Deriver", "Deriver: k96nyqbi8qjl3jnbvnv4bn756y3kx28k-cache-mid"), "is not a derivation");
  refused(replace_line(good, "NarHash", "this is not a narinfo line"), "line 6: expected 'Key: value'");
  refused(good + "Sig: nokeyname\n", "line 10, Sig: 'nokeyname' is not 'keyname:signature'");
  refused(replace_line(good, "URL", "X: y"), "no URL line");
  refused(std::string("StorePath: /nix/store/bvcqpxh9hzngg188v462xq2nm5a7qizx-cache-mid\r\n") + good.substr(good.find('\n') + 1),
          "line 1: a control character");
  BOOST_CHECK_THROW(parse_cache_info("StoreDir: relative\n", "c"), format_error);
  BOOST_CHECK_THROW(parse_cache_info("Priority: high\n", "c"), format_error);
}

BOOST_AUTO_TEST_SUITE_END()
