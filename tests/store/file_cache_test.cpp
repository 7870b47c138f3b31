// The caches Nix 2.8 wrote (vectors/cache: none, xz, bzip2, zstd, signed
// with vectors/keys) as file:// substituters into a fresh store: the
// closure arrives, verifies and carries the signatures. Then hostile
// caches, made from a copy of one, each leaving nothing of the path behind.
#include "store/cache/file_cache.hpp"
#include "store/cache/substituters.hpp"
#include "store/io/error.hpp"
#include "store/local/verify.hpp"
#include "tests/support/test_support.hpp"

#include <boost/test/unit_test.hpp>

using namespace kiln;

namespace {

const store_path top = parse_store_path("/nix/store/lbvqvlwms6h8z4sp94fp5ii6sss6ch74-cache-top");
const store_path mid = parse_store_path("/nix/store/bvcqpxh9hzngg188v462xq2nm5a7qizx-cache-mid");
const store_path leaf = parse_store_path("/nix/store/y3gigz3mcqsw9cwvprxchfxbpsypkqmc-cache-leaf");

trusted_keys vector_keys() { return make_trusted_keys({test::read_file(test::vectors_dir() + "/keys/public.key")}); }

// A writable copy of one of the vectors' caches.
struct cache_copy {
  test::temp_dir tmp;
  std::string dir = tmp / "cache";
  explicit cache_copy(const std::string& compression) {
    std::string from = test::vectors_dir() + "/cache/" + compression;
    BOOST_REQUIRE(std::system(("cp -r '" + from + "' '" + dir + "' && chmod -R u+w '" + dir + "'").c_str()) == 0);
  }
  std::string narinfo(const store_path& p) const { return dir + "/" + std::string(p.hash_part()) + ".narinfo"; }
  void edit(const store_path& p, const std::string& key, const std::string& line) const {
    std::string text = test::read_file(narinfo(p));
    auto at = text.find(key + ": ");
    text = text.substr(0, at) + line + text.substr(text.find('\n', at));
    test::write_file(narinfo(p), text);
  }
  std::string nar_file(const store_path& p) const {
    std::string text = test::read_file(narinfo(p));
    auto at = text.find("URL: ") + 5;
    return dir + "/" + text.substr(at, text.find('\n', at) - at);
  }
};

struct fresh_store {
  test::temp_dir tmp;
  local_store store{store_layout{tmp / "root"}};
};

// What substituting `top` from `uri` did; the store must hold none of a
// failed path.
std::string attempt(const std::string& uri, const trusted_keys& keys = vector_keys()) {
  fresh_store s;
  auto sub = make_substituter(uri);
  try {
    sub->open();
    auto outcome = sub->substitute(s.store, top, keys, true);
    BOOST_TEST(!s.store.db().is_valid(top));
    return outcome.kind == substitute_outcome::substituted ? "substituted" : outcome.message;
  } catch (const error& e) {
    BOOST_TEST(!s.store.db().is_valid(top));
    return e.what();
  }
}

void refused(const std::string& got, const std::string& fragment) {
  BOOST_TEST(got.find(fragment) != std::string::npos, "wanted '" << fragment << "', got: " << got);
}

} // namespace

BOOST_AUTO_TEST_SUITE(file_cache_tests)

BOOST_AUTO_TEST_CASE(every_cache_nix_wrote_substitutes_a_closure_that_verifies) {
  for (auto& compression : {"none", "xz", "bzip2", "zstd"}) {
    BOOST_TEST_CONTEXT(compression) {
      fresh_store s;
      auto sub = make_substituter("file://" + test::vectors_dir() + "/cache/" + compression);
      sub->open();
      auto outcome = sub->substitute(s.store, top, vector_keys(), true);
      BOOST_TEST((outcome.kind == substitute_outcome::substituted), outcome.message);
      for (auto& p : {top, mid, leaf}) {
        BOOST_TEST(s.store.db().is_valid(p));
        BOOST_TEST(s.store.db().query_path_info(p)->sigs.size() == 1u);
      }
      BOOST_TEST(verify_paths(s.store, {top, mid, leaf}, true).empty());
    }
  }
}

BOOST_AUTO_TEST_CASE(an_unsigned_or_absent_path_is_passed_over) {
  std::string cache = "file://" + test::vectors_dir() + "/cache/xz";
  refused(attempt(cache, make_trusted_keys({"other-key:" + std::string(43, 'A') + "="})),
          "is not signed by any of the keys in 'trusted-public-keys'");
  fresh_store s;
  auto sub = make_substituter(cache);
  auto outcome = sub->substitute(s.store, parse_store_path("/nix/store/" + std::string(32, '1') + "-absent"),
                                 vector_keys(), true);
  BOOST_TEST((outcome.kind == substitute_outcome::absent));
}

BOOST_AUTO_TEST_CASE(a_hostile_cache_registers_nothing) {
  {
    cache_copy c("xz");
    test::write_file(c.narinfo(top), "this is not a narinfo\n");
    refused(attempt("file://" + c.dir), "line 1: expected 'Key: value'");
  }
  {
    cache_copy c("none"); // trusted: the signature no longer covers what is changed
    c.edit(top, "NarHash", "NarHash: sha256:0yxqkx4j9w9kl5iav2q32fmhkr3i804dd8wm88pn2skkbj21xnnz");
    c.edit(top, "FileHash", "X-No-FileHash: the file's own check would catch it first");
    refused(attempt("file://" + c.dir + "?trusted=1"), "hash mismatch importing path");
  }
  {
    cache_copy c("none");
    std::string nar = test::read_file(c.nar_file(top));
    test::write_file(c.nar_file(top), nar.substr(0, nar.size() / 2));
    refused(attempt("file://" + c.dir), "bytes, its narinfo says");
  }
  {
    cache_copy c("zstd");
    c.edit(top, "FileSize", "FileSize: 1");
    refused(attempt("file://" + c.dir + "?trusted=1"), "its narinfo says 1");
  }
  {
    cache_copy c("xz");
    c.edit(top, "Compression", "Compression: br");
    refused(attempt("file://" + c.dir + "?trusted=1"), "unknown compression 'br'");
  }
  {
    cache_copy c("xz");
    c.edit(top, "Sig", "Sig: test-cache-1:" + std::string(86, 'A') + "==");
    refused(attempt("file://" + c.dir), "is not signed by any of the keys");
  }
  {
    cache_copy c("xz");
    c.edit(top, "References", "References: ../../../etc/passwd");
    refused(attempt("file://" + c.dir), "is not the name of a store path");
  }
  {
    cache_copy c("xz");
    test::write_file(c.dir + "/nix-cache-info", "StoreDir: /gnu/store\n");
    refused(attempt("file://" + c.dir), "is for a store in '/gnu/store'");
  }
  refused(attempt("file:///nonexistent/cache"), "has no nix-cache-info");
  BOOST_CHECK_THROW(make_substituter("https://cache.example/"), format_error);
}

BOOST_AUTO_TEST_SUITE_END()
