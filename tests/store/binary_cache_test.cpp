// The caches Nix 2.8 wrote (vectors/cache: none, xz, bzip2, zstd, signed
// with vectors/keys) as file:// substituters into a fresh store: the
// closure arrives, verifies and carries the signatures. Then hostile
// caches, made from a copy of one, each leaving nothing of the path behind.
// Then caches Kiln writes (copy.hpp into a binary_cache_store): without
// compression, byte for byte what Nix wrote; with each compression, read
// back into a fresh store; a NAR that does not match leaves nothing.
#include "store/cache/store_uri.hpp"
#include "store/cache/substituter.hpp"
#include "store/copy.hpp"
#include "store/io/compress.hpp"
#include "store/io/file_ops.hpp"
#include "store/io/error.hpp"
#include "store/local/verify.hpp"
#include "tests/support/nar_builder.hpp"
#include "tests/support/test_support.hpp"

#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

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
  try {
    auto sub = make_substituter(uri);
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

// A store holding the vectors' closure, substituted from Nix's cache.
struct store_with_closure : fresh_store {
  store_with_closure() {
    auto sub = make_substituter("file://" + test::vectors_dir() + "/cache/none");
    BOOST_REQUIRE(sub->substitute(store, top, vector_keys(), true).kind == substitute_outcome::substituted);
  }
};

// Records what reaches it, to see how much of a NAR a consumer was given.
struct counting_sink : sink {
  uint64_t bytes = 0;
  void write(const char*, std::size_t n) override { bytes += n; }
};

} // namespace

BOOST_AUTO_TEST_SUITE(binary_cache_tests)

BOOST_AUTO_TEST_CASE(every_cache_nix_wrote_substitutes_a_closure_that_verifies) {
  for (auto& compression : {"none", "xz", "bzip2", "zstd"}) {
    BOOST_TEST_CONTEXT(compression) {
      fresh_store s;
      auto sub = make_substituter("file://" + test::vectors_dir() + "/cache/" + compression);
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
    c.edit(top, "Sig", "X-Unsigned: the signature line is gone");
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
  BOOST_CHECK_THROW(make_substituter("s3://cache-bucket"), format_error);
}

// NARs no honest dumper makes, served by a cache whose narinfo matches
// them byte for byte (hash and size right, signature not needed): the NAR
// itself must be refused as it is unpacked, leaving nothing.
BOOST_AUTO_TEST_CASE(a_cache_s_nar_with_dotdot_unsorted_or_duplicate_entries_registers_nothing) {
  auto dir_with = [](std::initializer_list<const char*> names) {
    test::nar_builder b;
    b.magic().begin_dir();
    for (auto* n : names)
      b.begin_entry(n).file("x").end_entry();
    return b.end_dir().bytes;
  };
  struct bad_nar {
    std::string nar, fragment;
  };
  for (auto& [nar, fragment] : {bad_nar{dir_with({".."}), "'..'"}, bad_nar{dir_with({"b", "a"}), "out of order"},
                                 bad_nar{dir_with({"a", "a"}), "duplicate entry"}, bad_nar{dir_with({"a/b"}), "'a/b'"}}) {
    BOOST_TEST_CONTEXT(fragment) {
      cache_copy c("none");
      // `leaf` (no references) now served as this NAR.
      test::write_file(c.nar_file(leaf), nar);
      c.edit(leaf, "NarHash", "NarHash: " + hash_string(hash_algo::sha256, nar).to_prefixed(hash_format::base32));
      c.edit(leaf, "NarSize", "NarSize: " + std::to_string(nar.size()));
      c.edit(leaf, "FileHash", "FileHash: " + hash_string(hash_algo::sha256, nar).to_prefixed(hash_format::base32));
      c.edit(leaf, "FileSize", "FileSize: " + std::to_string(nar.size()));
      fresh_store s;
      auto sub = make_substituter("file://" + c.dir + "?trusted=1");
      try {
        sub->substitute(s.store, leaf, vector_keys(), true);
        BOOST_ERROR("a hostile NAR was accepted");
      } catch (const error& e) {
        refused(e.what(), fragment);
      }
      BOOST_TEST(!s.store.db().is_valid(leaf));
      BOOST_TEST(test::list_dir(s.store.layout().store_dir()).empty());
    }
  }
}

BOOST_AUTO_TEST_CASE(a_cache_kiln_writes_without_compression_is_the_one_nix_wrote) {
  store_with_closure s;
  test::temp_dir out;
  std::string key = test::vectors_dir() + "/keys/secret.key";
  auto cache = open_store_uri("file://" + out / "cache" + "?compression=none&secret-key=" + key, true);
  copy_plan plan = plan_copy(s.store, *cache, {top});
  BOOST_TEST(plan.paths.size() == 3u);
  BOOST_TEST(copy_paths(s.store, *cache, plan.paths).size() == 3u);
  std::string nix = test::vectors_dir() + "/cache/none";
  BOOST_TEST(test::read_file(out / "cache/nix-cache-info") == test::read_file(nix + "/nix-cache-info"));
  for (auto& p : {top, mid, leaf}) {
    std::string name = std::string(p.hash_part()) + ".narinfo";
    BOOST_TEST(test::read_file(out / "cache" + "/" + name) == test::read_file(nix + "/" + name));
  }
  for (auto& name : test::list_dir(nix + "/nar")) {
    BOOST_TEST(test::read_file(out / "cache/nar/" + name) == test::read_file(nix + "/nar/" + name));
    struct stat st {};
    BOOST_TEST(::stat((out / "cache/nar/" + name).c_str(), &st) == 0);
    BOOST_TEST((st.st_mode & 0444) == 0444u); // whoever serves the cache can read it
  }
  // Nothing else: no scratch files left behind.
  BOOST_TEST(test::list_dir(out / "cache").size() == 5u);
  // Copying again finds everything there.
  BOOST_TEST(plan_copy(s.store, *cache, {top}).paths.empty());
}

BOOST_AUTO_TEST_CASE(a_cache_kiln_writes_with_each_compression_substitutes_into_a_fresh_store) {
  store_with_closure s;
  auto key = generate_secret_key("kiln-test-1");
  test::temp_dir keys;
  test::write_file(keys / "secret", key.to_string());
  trusted_keys ours = make_trusted_keys({key.to_public().to_string()});
  for (std::string compression : {"none", "xz", "bzip2", "zstd"}) {
    BOOST_TEST_CONTEXT(compression) {
      test::temp_dir out;
      std::string uri = "file://" + out / "c";
      auto cache = open_store_uri(uri + "?compression=" + compression + "&compression-level=1&secret-key=" + keys / "secret", true);
      copy_paths(s.store, *cache, plan_copy(s.store, *cache, {top}).paths);
      for (auto& name : test::list_dir(out / "c/nar")) {
        std::string ext = compression_extension(compression);
        BOOST_TEST(name.substr(name.size() - 4 - ext.size()) == ".nar" + ext);
      }
      fresh_store again;
      auto sub = make_substituter(uri);
      auto outcome = sub->substitute(again.store, top, ours, true);
      BOOST_TEST((outcome.kind == substitute_outcome::substituted), outcome.message);
      BOOST_TEST(verify_paths(again.store, {top, mid, leaf}, true).empty());
      // Nix's signature and ours.
      BOOST_TEST(again.store.db().query_path_info(top)->sigs.size() == 2u);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_nar_that_does_not_match_its_record_leaves_nothing_in_the_cache) {
  store_with_closure s;
  test::temp_dir out;
  auto cache = open_store_uri("file://" + out / "c?compression=zstd", true);
  path_info info = *s.store.db().query_path_info(leaf);
  info.nar_hash = s.store.db().query_path_info(mid)->nar_hash;
  std::string nar;
  {
    string_sink all;
    s.store.nar_from_path(leaf, all);
    nar = all.s;
  }
  string_source in(nar);
  BOOST_CHECK_EXCEPTION(cache->add_nar(in, info), error, test::mentions("hash mismatch importing path"));
  BOOST_TEST(!cache->is_valid(leaf));
  BOOST_TEST((test::list_dir(out / "c") == std::vector<std::string>{"nix-cache-info"}));
}

BOOST_AUTO_TEST_CASE(a_consumer_never_gets_a_whole_nar_from_a_file_that_does_not_match) {
  cache_copy c("zstd");
  c.edit(top, "FileHash", "FileHash: sha256:0yxqkx4j9w9kl5iav2q32fmhkr3i804dd8wm88pn2skkbj21xnnz");
  auto cache = open_store_uri("file://" + c.dir, false);
  counting_sink got;
  BOOST_CHECK_THROW(cache->nar_from_path(top, got), error);
  BOOST_TEST(got.bytes < cache->query_path_info(top)->nar_size);
  // As it is, the NAR comes whole.
  cache_copy good("zstd");
  counting_sink all;
  open_store_uri("file://" + good.dir, false)->nar_from_path(top, all);
  BOOST_TEST(all.bytes == 744u);
}

BOOST_AUTO_TEST_CASE(a_cache_s_build_log_and_what_it_cannot_do) {
  auto cache = open_store_uri("file://" + test::vectors_dir() + "/cache/xz", false);
  auto log = cache->build_log(parse_store_path("/nix/store/229qa059h6jyyxn7ad92kyj2da65j18b-cache-top.drv"));
  BOOST_REQUIRE(log.has_value());
  BOOST_TEST(*log == test::read_file(test::vectors_dir() + "/cache/xz/log/229qa059h6jyyxn7ad92kyj2da65j18b-cache-top.drv"));
  BOOST_TEST((cache->query_path_from_hash_part(top.hash_part()) == std::optional<store_path>(top)));
  BOOST_CHECK_EXCEPTION(cache->query_referrers(top), error, test::mentions("cannot tell a path's referrers"));
  test::temp_dir out;
  BOOST_CHECK_THROW(open_store_uri("file://" + out / "c?compression=br", true), format_error);
  BOOST_CHECK_THROW(open_store_uri("file://" + out / "c?compression-level=x", true), format_error);
  BOOST_CHECK_THROW(open_store_uri("file://" + out / "c?colour=blue", true), format_error);
  BOOST_CHECK_THROW(open_store_uri("file://" + out / "c?secret-key=" + out / "none", true), error);
  BOOST_CHECK_THROW(open_store_uri("file://relative/dir", true), format_error);
  BOOST_TEST(!path_exists(out / "c/nix-cache-info")); // nothing made for a bad URI
}

BOOST_AUTO_TEST_SUITE_END()
