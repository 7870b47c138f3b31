#include <boost/test/unit_test.hpp>

#include "store/local/closure.hpp"
#include "store/format/derivation.hpp"
#include "store/io/error.hpp"
#include "store/local/local_store.hpp"
#include "store/format/nar.hpp"
#include "tests/support/nar_builder.hpp"
#include "tests/support/test_support.hpp"

#include <set>
#include <sys/stat.h>

using namespace kiln;

namespace {

struct fixture {
  test::temp_dir tmp;
  local_store store{store_layout{tmp / "root"}};

  // Everything in the store directory except lock files of finished adds.
  std::vector<std::string> store_entries() { return test::list_dir(store.layout().store_dir()); }
};

std::string nar_of(const std::string& path) {
  string_sink s;
  dump_path(path, s);
  return s.s;
}

// The "nested" NAR vector and the path info Nix gave it.
std::pair<std::string, path_info> nested_vector() {
  auto& c = test::vector_case("nar", "nested");
  std::string nar = test::read_file(test::vectors_dir() + "/" + c["nar_file"].get<std::string>());
  path_info info(parse_store_path(c["store_path_if_added"].get<std::string>()));
  info.nar_hash = parse_hash(c["nar_sha256_sri"].get<std::string>());
  info.nar_size = nar.size();
  return {nar, info};
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(local_store_tests, fixture)

BOOST_AUTO_TEST_CASE(adds_every_vector_tree_at_the_path_nix_gives_it) {
  for (auto& c : test::manifest()["nar"]["cases"]) {
    std::string name = c["case"], src = tmp / name;
    test::make_tree(c["tree"], src);
    auto info = store.add_path(src);
    BOOST_TEST(info.path.full() == c["store_path_if_added"].get<std::string>(), name);
    BOOST_TEST(info.nar_size == c["nar_size"].get<uint64_t>());
    BOOST_TEST(info.ca.value_or("").rfind("fixed:r:sha256:", 0) == 0);
    BOOST_TEST(nar_of(store.real_path(info.path)) ==
               test::read_file(test::vectors_dir() + "/" + c["nar_file"].get<std::string>()));
    struct stat st;
    BOOST_REQUIRE(::lstat(store.real_path(info.path).c_str(), &st) == 0);
    BOOST_TEST(st.st_mtime == 1);
    if (c.contains("fixed_output_flat_sha256_path"))
      BOOST_TEST(store.add_path(src, ingestion_method::flat).path.full() ==
                 c["fixed_output_flat_sha256_path"].get<std::string>());
  }
  // Nothing but store paths (and no temporaries, journal or lock files) remain.
  for (auto& e : store_entries())
    BOOST_TEST(e.find("-kiln-") == std::string::npos, e);
  BOOST_TEST(test::list_dir(store.layout().pending_dir()).empty());
}

BOOST_AUTO_TEST_CASE(a_drv_is_registered_with_its_outputs_and_must_be_one) {
  derivation d;
  d.platform = "x86_64-linux";
  d.builder = "/bin/sh";
  d.outputs["out"].path = "/nix/store/0s8jcmp0ri4gyxsxgnkx6iqp3g6fsc7p-thing";
  d.outputs["dev"].path = "/nix/store/1s8jcmp0ri4gyxsxgnkx6iqp3g6fsc7p-thing-dev";
  auto info = store.add_derivation(d, "thing");
  BOOST_TEST(info.path.full() == derivation_store_path(d, "thing").full());
  auto outs = store.db().query_derivation_outputs(info.path);
  BOOST_TEST(outs.size() == 2u);
  BOOST_TEST(outs.at("dev").full() == d.outputs["dev"].path);

  BOOST_CHECK_EXCEPTION(store.add_text("bad.drv", "Derive([", {}), format_error, [](const error& e) {
    return std::string(e.what()).find("is named like a derivation but is not one") != std::string::npos;
  });
  for (auto& e : store_entries())
    BOOST_TEST((e == std::string(info.path.base_name()) || e.find(".lock") != std::string::npos), e);
  BOOST_TEST(test::list_dir(store.layout().pending_dir()).empty());
}

BOOST_AUTO_TEST_CASE(adding_twice_is_a_no_op) {
  std::string src = tmp / "f";
  test::write_file(src, "x");
  auto a = store.add_path(src);
  auto b = store.add_path(src);
  BOOST_TEST(a.path.full() == b.path.full());
  BOOST_TEST(a.registration_time == b.registration_time);
}

BOOST_AUTO_TEST_CASE(adds_text_with_references_as_builtins_tofile_does) {
  auto source = [](const std::string& name) {
    for (auto& s : test::manifest()["derivations"]["sources"])
      if (s["name"] == name)
        return s;
    throw error("no source " + name);
  };
  auto srcdir = source("srcdir"), note_ref = source("note-ref.txt");
  test::make_tree(srcdir["tree"], tmp / "srcdir");
  auto dir = store.add_path(tmp / "srcdir");
  BOOST_TEST(dir.path.full() == srcdir["store_path"].get<std::string>());
  auto text = store.add_text("note-ref.txt", note_ref["contents"].get<std::string>(), {dir.path});
  BOOST_TEST(text.path.full() == note_ref["store_path"].get<std::string>());
  BOOST_TEST((store.db().query_references(text.path) == store_path_set{dir.path}));
  BOOST_TEST((compute_closure(store.db(), {text.path}) == std::vector<store_path>{dir.path, text.path}));
  BOOST_TEST((compute_closure(store.db(), {dir.path}, true) == std::vector<store_path>{dir.path, text.path}));
  BOOST_CHECK_THROW(store.add_text("x", "y", {parse_store_path("/nix/store/00000000000000000000000000000000-gone")}), error);
}

BOOST_AUTO_TEST_CASE(adds_a_nar_with_known_info) {
  auto [nar, info] = nested_vector();
  std::string stream = nar + "export continues here";
  string_source in(stream);
  auto added = store.add_nar(in, info);
  BOOST_TEST(store.db().is_valid(added.path));
  char rest[6] = {};
  BOOST_TEST(in.read(rest, 6) == 6u); // exactly the NAR was consumed
  BOOST_TEST(std::string(rest, 6) == "export");
}

BOOST_AUTO_TEST_CASE(a_nar_with_the_wrong_hash_leaves_nothing_behind) {
  auto [nar, info] = nested_vector();
  info.nar_hash = hash_string(hash_algo::sha256, "something else");
  string_source in(nar);
  try {
    store.add_nar(in, info);
    BOOST_ERROR("accepted a NAR with the wrong hash");
  } catch (const error& e) {
    BOOST_TEST(std::string(e.what()).find("hash mismatch") != std::string::npos, e.what());
  }
  BOOST_TEST(!store.db().is_valid(info.path));
  BOOST_TEST(test::list_dir(store.layout().store_dir()).empty()); // not even PATH.lock
  BOOST_TEST(!test::exists(store.real_path(info.path)));
  BOOST_TEST(test::list_dir(store.layout().pending_dir()).empty());
}

BOOST_AUTO_TEST_CASE(a_truncated_or_malformed_nar_leaves_nothing_behind) {
  auto [nar, info] = nested_vector();
  std::string cut = nar.substr(0, nar.size() / 2);
  string_source in(cut);
  BOOST_CHECK_THROW(store.add_nar(in, info), error);
  std::string bad = nar;
  bad[bad.size() - 9] = 'X'; // corrupt the final tokens
  string_source in2(bad);
  BOOST_CHECK_THROW(store.add_nar(in2, info), error);
  BOOST_TEST(!test::exists(store.real_path(info.path)));
  for (auto& e : store_entries())
    BOOST_TEST(e.find("-kiln-") == std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(reopening_finishes_an_interrupted_add) {
  // What a crash between rename and registration leaves: a journal entry,
  // the content under its final name, a temporary, and no database row.
  auto p = parse_store_path("/nix/store/00000000000000000000000000000000-crashed");
  std::string base(p.base_name());
  test::write_file(store.layout().pending_dir() + "/" + base, "");
  ::mkdir(store.real_path(p).c_str(), 0755);
  test::write_file(store.real_path(p) + "/half", "written");
  ::mkdir((store.layout().store_dir() + "/" + std::string(p.hash_part()) + "-kiln-tmp-999999").c_str(), 0755);
  ::mkdir((store.layout().store_dir() + "/" + std::string(p.hash_part()) + "-kiln-stage-999999").c_str(), 0755);
  local_store reopened(store.layout());
  BOOST_TEST(reopened.cleaned_on_open() == 3u);
  BOOST_TEST(!test::exists(store.real_path(p)));
  BOOST_TEST(test::list_dir(store.layout().store_dir()).empty());
  BOOST_TEST(test::list_dir(store.layout().pending_dir()).empty());
}

BOOST_AUTO_TEST_CASE(a_registered_path_in_the_journal_is_kept) {
  std::string src = tmp / "keep";
  test::write_file(src, "keep");
  auto info = store.add_path(src);
  test::write_file(store.layout().pending_dir() + "/" + std::string(info.path.base_name()), "");
  local_store reopened(store.layout());
  BOOST_TEST(reopened.cleaned_on_open() == 0u);
  BOOST_TEST(reopened.db().is_valid(info.path));
  BOOST_TEST(test::exists(store.real_path(info.path)));
}

BOOST_AUTO_TEST_CASE(a_batch_of_nars_is_added_at_once_and_a_bad_one_keeps_what_came_before) {
  // Three paths from another store, the second referring to the first.
  test::temp_dir other_dir;
  local_store other{store_layout{other_dir / "root"}};
  test::write_file(tmp / "one", "one");
  test::write_file(tmp / "three", "three");
  auto one = other.add_path(tmp / "one");
  auto two = other.add_text("two", one.path.full(), {one.path});
  auto three = other.add_path(tmp / "three");
  auto write = [&](const path_info& info, sink& out) { other.nar_from_path(info.path, out); };
  auto added = store.add_nars({one, two}, write);
  BOOST_TEST(added.size() == 2u);
  BOOST_TEST((store.db().query_path_info(two.path)->references == store_path_set{one.path}));
  BOOST_TEST(store.add_nars({one, two}, write).empty()); // valid already
  // The second of these does not match its record: the first is kept,
  // nothing of the second or the third is left.
  test::write_file(tmp / "four", "four");
  auto four = other.add_path(tmp / "four");
  path_info lying = four;
  lying.nar_hash = three.nar_hash;
  test::write_file(tmp / "five", "five");
  auto five = other.add_path(tmp / "five");
  BOOST_CHECK_THROW(store.add_nars({three, lying, five}, write), error);
  BOOST_TEST(store.db().is_valid(three.path));
  BOOST_TEST(!store.db().is_valid(four.path));
  BOOST_TEST(!store.db().is_valid(five.path));
  auto entries = store_entries();
  BOOST_TEST((std::set<std::string>(entries.begin(), entries.end()) ==
              std::set<std::string>{std::string(one.path.base_name()), std::string(two.path.base_name()),
                                    std::string(three.path.base_name())}));
  BOOST_TEST(test::list_dir(store.layout().pending_dir()).empty());
  // A reference that is neither valid nor earlier in the batch is refused.
  test::temp_dir fresh_dir;
  local_store fresh{store_layout{fresh_dir / "root"}};
  BOOST_CHECK_THROW(fresh.add_nars({two}, write), error);
  BOOST_TEST(!fresh.db().is_valid(two.path));
}

BOOST_AUTO_TEST_CASE(store_uris) {
  BOOST_TEST(store_layout::from_uri("local:/x/y/").root == "/x/y");
  BOOST_TEST(store_layout::from_uri("local:/").root == "");
  BOOST_CHECK_THROW(store_layout::from_uri("daemon"), format_error);
}

BOOST_AUTO_TEST_SUITE_END()
