#include <boost/test/unit_test.hpp>

#include "store/io/error.hpp"
#include "store/local/store_db.hpp"
#include "tests/support/test_support.hpp"

#include <cstdio>
#include <sys/stat.h>

using namespace kiln;

namespace {

store_path sp(const std::string& base) {
  return store_path::from_base_name(base);
}

const store_path leaf = sp("y3gigz3mcqsw9cwvprxchfxbpsypkqmc-cache-leaf");
const store_path mid = sp("bvcqpxh9hzngg188v462xq2nm5a7qizx-cache-mid");
const store_path top = sp("lbvqvlwms6h8z4sp94fp5ii6sss6ch74-cache-top");
const store_path top_drv = sp("229qa059h6jyyxn7ad92kyj2da65j18b-cache-top.drv");

path_info info(const store_path& p, store_path_set refs, uint64_t size = 120) {
  path_info i(p);
  i.nar_hash = hash_string(hash_algo::sha256, std::string(p.base_name()));
  i.nar_size = size;
  i.references = std::move(refs);
  return i;
}

std::string db_dir(const test::temp_dir& t) {
  std::string d = t / "db";
  ::mkdir(d.c_str(), 0755);
  return d;
}

// Runs a shell command, returning its stdout; empty if it failed.
std::string shell(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p)
    return out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p))
    out.append(buf, n);
  return ::pclose(p) == 0 ? out : std::string();
}

std::string schema_summary(const std::string& db_file) {
  // Columns, indexes, foreign keys and triggers, in a stable order.
  sqlite_db db(db_file, false);
  std::string out;
  sqlite_stmt tables(db, "select name, type from sqlite_master where name not like 'sqlite_%' order by name", "t");
  std::vector<std::pair<std::string, std::string>> objects;
  while (tables.step())
    objects.emplace_back(tables.text(0), tables.text(1));
  for (auto& [name, type] : objects) {
    out += type + " " + name + "\n";
    if (type != "table")
      continue;
    for (auto pragma : {"table_info", "index_list", "foreign_key_list"}) {
      sqlite_stmt q(db, std::string("select * from pragma_") + pragma + "('" + name + "')", "p");
      while (q.step()) {
        out += std::string("  ") + pragma + ":";
        for (int c = 0; c < 8; ++c)
          out += " " + (q.is_null(c) ? std::string("null") : q.text(c));
        out += "\n";
      }
    }
  }
  return out;
}

} // namespace

BOOST_AUTO_TEST_SUITE(store_db_tests)

BOOST_AUTO_TEST_CASE(a_new_database_gets_nix_schema_version_10_in_wal_mode) {
  test::temp_dir t;
  auto dir = db_dir(t);
  store_db db(dir);
  BOOST_TEST(test::read_file(dir + "/schema") == "10");
  sqlite_stmt q(db.db(), "pragma journal_mode", "test");
  BOOST_REQUIRE(q.step());
  BOOST_TEST(q.text(0) == "wal");
}

BOOST_AUTO_TEST_CASE(registers_and_queries_a_closure) {
  test::temp_dir t;
  store_db db(db_dir(t));
  auto top_info = info(top, {mid, top}, 744);
  top_info.deriver = top_drv;
  top_info.ultimate = true;
  top_info.sigs = {"k-1:abc", "k-2:def"};
  auto leaf_info = info(leaf, {});
  leaf_info.ca = "fixed:r:sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
  db.register_valid_paths({top_info, info(mid, {leaf}), leaf_info}); // any order within a batch

  BOOST_TEST(db.is_valid(top));
  auto got = db.query_path_info(top);
  BOOST_REQUIRE(got);
  BOOST_TEST(got->nar_hash.base16() == top_info.nar_hash.base16());
  BOOST_TEST(got->nar_size == 744u);
  BOOST_TEST((got->references == store_path_set{mid, top}));
  BOOST_TEST(got->deriver->base_name() == top_drv.base_name());
  BOOST_TEST(got->ultimate);
  BOOST_TEST((got->sigs == top_info.sigs));
  BOOST_TEST(!got->ca);
  BOOST_TEST(got->registration_time > 1700000000);
  BOOST_TEST(*db.query_path_info(leaf)->ca == *leaf_info.ca);
  BOOST_TEST(!db.query_path_info(leaf)->ultimate);
  BOOST_TEST((db.query_referrers(leaf) == store_path_set{mid}));
  BOOST_TEST((db.query_referrers(top) == store_path_set{top}));
  BOOST_TEST(db.query_all_valid_paths().size() == 3u);
}

BOOST_AUTO_TEST_CASE(refuses_a_path_whose_reference_is_not_valid_and_registers_nothing) {
  test::temp_dir t;
  store_db db(db_dir(t));
  try {
    db.register_valid_paths({info(leaf, {}), info(mid, {top})});
    BOOST_ERROR("registered a path with an invalid reference");
  } catch (const error& e) {
    BOOST_TEST(std::string(e.what()).find("its reference '/nix/store/" + std::string(top.base_name()) +
                                          "' is not valid") != std::string::npos, e.what());
  }
  BOOST_TEST(!db.is_valid(leaf)); // the whole batch was refused
}

BOOST_AUTO_TEST_CASE(invalidating_respects_referrers_but_not_self_references) {
  test::temp_dir t;
  store_db db(db_dir(t));
  db.register_valid_paths({info(leaf, {}), info(mid, {leaf, mid})});
  BOOST_CHECK_THROW(db.invalidate_path(leaf), error);
  db.invalidate_path(mid);
  db.invalidate_path(leaf);
  BOOST_TEST(db.query_all_valid_paths().empty());
}

BOOST_AUTO_TEST_CASE(records_derivation_outputs_and_derivers) {
  test::temp_dir t;
  store_db db(db_dir(t));
  db.register_valid_paths({info(top_drv, {})});
  db.add_derivation_outputs(top_drv, {{"out", top}});
  BOOST_TEST(db.query_derivation_outputs(top_drv).at("out").base_name() == top.base_name());
  BOOST_TEST((db.query_valid_derivers(top) == store_path_set{top_drv}));
  BOOST_CHECK_THROW(db.add_derivation_outputs(mid, {{"out", top}}), error);
}

BOOST_AUTO_TEST_CASE(refuses_unknown_schema_versions) {
  test::temp_dir t;
  auto dir = db_dir(t);
  { store_db db(dir); }
  test::write_file(dir + "/schema", "11");
  try {
    store_db db(dir);
    BOOST_ERROR("opened a version 11 database");
  } catch (const error& e) {
    BOOST_TEST(std::string(e.what()).find("schema version 11; Kiln knows only version 10") !=
               std::string::npos, e.what());
  }
  test::write_file(dir + "/schema", "ten");
  BOOST_CHECK_THROW(store_db{dir}, error);
}

BOOST_AUTO_TEST_CASE(a_creation_interrupted_before_the_schema_file_is_finished) {
  test::temp_dir t;
  auto dir = db_dir(t);
  { store_db db(dir); db.register_valid_paths({info(leaf, {})}); }
  ::unlink((dir + "/schema").c_str()); // as if killed just before writing it
  store_db db(dir);
  BOOST_TEST(test::read_file(dir + "/schema") == "10");
  BOOST_TEST(db.is_valid(leaf)); // what was there survives
}

BOOST_AUTO_TEST_CASE(schema_matches_what_nix_creates_and_nix_reads_our_database) {
  if (shell("command -v nix-store").empty()) {
    BOOST_TEST_MESSAGE("nix-bin is not installed; run scripts/setup");
    BOOST_FAIL("the reference Nix is required for this test");
  }
  test::temp_dir t;
  std::string nix_root = t / "nix-root", kiln_root = t / "kiln-root";
  BOOST_REQUIRE(!shell("nix-store --store " + nix_root + " --init && echo ok").empty());
  std::string kiln_db = kiln_root + "/nix/var/nix/db";
  BOOST_REQUIRE(!shell("mkdir -p " + kiln_db + " " + kiln_root + "/nix/store && echo ok").empty());
  {
    store_db db(kiln_db);
    auto top_info = info(top, {leaf, top}, 744);
    top_info.deriver = top_drv;
    top_info.sigs = {"k-1:abc"};
    db.register_valid_paths({info(leaf, {}), top_info});
  }
  BOOST_TEST(schema_summary(kiln_db + "/db.sqlite") ==
             schema_summary(nix_root + "/nix/var/nix/db/db.sqlite"));

  auto json = shell("nix --extra-experimental-features nix-command --store " + kiln_root +
                    " path-info --json --sigs " + top.full());
  BOOST_REQUIRE_MESSAGE(!json.empty(), "nix path-info could not read the kiln database");
  auto j = nlohmann::json::parse(json).at(0);
  BOOST_TEST(j["path"] == top.full());
  BOOST_TEST(j["narSize"] == 744);
  BOOST_TEST(j["narHash"] == info(top, {}).nar_hash.to_string(hash_format::sri));
  BOOST_TEST((j["references"].get<std::set<std::string>>() == std::set<std::string>{leaf.full(), top.full()}));
  BOOST_TEST(j["deriver"] == top_drv.full());
  BOOST_TEST(j["signatures"][0] == "k-1:abc");
}

BOOST_AUTO_TEST_SUITE_END()
