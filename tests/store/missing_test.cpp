// The "what is missing" plan on the vector derivations, in a real store.
// Substituters arrive with the binary-cache issue; here a query function
// stands in for one, as the plan takes it as a parameter.
#include <boost/test/unit_test.hpp>

#include "store/format/derivation.hpp"
#include "store/io/error.hpp"
#include "store/local/missing.hpp"
#include "store/format/nar.hpp"
#include "tests/support/test_support.hpp"

using namespace kiln;

namespace {

const nlohmann::json& drv_case(const std::string& name) {
  return test::vector_case("derivations", name);
}

store_path sp(const std::string& s) { return parse_store_path(s); }

struct fixture {
  test::temp_dir tmp;
  local_store store{store_layout{tmp / "root"}};

  // Adds a vector .drv (its input .drvs first); returns its path.
  store_path add_drv(const std::string& name) {
    auto& c = drv_case(name);
    std::string file = test::vectors_dir() + "/" + c["file"].get<std::string>();
    derivation d = read_derivation_file(file);
    for (auto& [in, outs] : d.input_drvs)
      for (auto& other : test::manifest()["derivations"]["cases"])
        if (other["drv_path"] == in)
          add_drv(other["case"]);
    auto p = store.add_derivation(d, derivation_name(d, file)).path;
    BOOST_REQUIRE(p.full() == c["drv_path"].get<std::string>());
    return p;
  }
  // Makes an output valid, as if it had been built.
  void make_valid(const std::string& path) { test::add_built_output(store, sp(path)); }
  std::string out_of(const std::string& name, const std::string& output = "out") {
    return drv_case(name)["outputs"][output];
  }
};

store_path_set set_of(std::initializer_list<std::string> ps) {
  store_path_set s;
  for (auto& p : ps)
    s.insert(sp(p));
  return s;
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(missing_tests, fixture)

BOOST_AUTO_TEST_CASE(a_chain_builds_everything_then_only_what_is_missing) {
  auto chain2 = add_drv("chain2");
  auto chain1 = sp(drv_case("chain1")["drv_path"]);
  auto plan = query_missing(store, {wanted_path::built(chain2)});
  BOOST_TEST((plan.will_build == store_path_set{chain1, chain2}));
  BOOST_TEST(plan.will_substitute.empty());
  BOOST_TEST(plan.unknown.empty());

  make_valid(out_of("chain1"));
  plan = query_missing(store, {wanted_path::built(chain2)});
  BOOST_TEST((plan.will_build == store_path_set{chain2}));

  make_valid(out_of("chain2"));
  plan = query_missing(store, {wanted_path::built(chain2)});
  BOOST_TEST(plan.will_build.empty());
}

BOOST_AUTO_TEST_CASE(only_the_wanted_outputs_count) {
  auto multi = add_drv("multi");
  make_valid(out_of("multi", "lib"));
  BOOST_TEST(query_missing(store, {wanted_path::built(multi, {"lib"})}).will_build.empty());
  BOOST_TEST((query_missing(store, {wanted_path::built(multi, {"lib", "dev"})}).will_build ==
              store_path_set{multi}));
  BOOST_TEST((query_missing(store, {wanted_path::built(multi)}).will_build == store_path_set{multi}));
  BOOST_CHECK_EXCEPTION(query_missing(store, {wanted_path::built(multi, {"doc"})}), error,
                        [](const error& e) { return std::string(e.what()).find("has no output 'doc'") != std::string::npos; });
}

BOOST_AUTO_TEST_CASE(substitutable_outputs_are_fetched_not_built) {
  auto uses = add_drv("usesFixed");
  std::string flat_out = out_of("foFlat");
  std::vector<store_path_set> asked;
  substitutable_query cache = [&](const store_path_set& paths) {
    asked.push_back(paths);
    std::map<store_path, substitutable_info> found;
    if (paths.count(sp(flat_out)))
      found[sp(flat_out)] = substitutable_info{{}, 100, 300, std::nullopt};
    return found;
  };
  auto plan = query_missing(store, {wanted_path::built(uses)}, cache);
  BOOST_TEST((plan.will_build == set_of({drv_case("usesFixed")["drv_path"], drv_case("foRec")["drv_path"]})));
  BOOST_TEST((plan.will_substitute == set_of({flat_out})));
  BOOST_TEST(plan.download_size == 100u);
  BOOST_TEST(plan.nar_size == 300u);
  BOOST_TEST(plan.unknown.empty());
}

BOOST_AUTO_TEST_CASE(a_substitute_brings_its_references_into_the_plan) {
  std::string a = "/nix/store/00000000000000000000000000000000-a";
  std::string b = "/nix/store/11111111111111111111111111111111-b";
  std::string c = "/nix/store/22222222222222222222222222222222-c";
  substitutable_query cache = [&](const store_path_set& paths) {
    std::map<store_path, substitutable_info> found;
    if (paths.count(sp(a)))
      found[sp(a)] = substitutable_info{set_of({a, b, c}), 10, 20, std::nullopt};
    if (paths.count(sp(b)))
      found[sp(b)] = substitutable_info{{}, 1, 2, std::nullopt};
    return found;
  };
  make_valid(c);
  auto plan = query_missing(store, {wanted_path::opaque(sp(a))}, cache);
  BOOST_TEST((plan.will_substitute == set_of({a, b})));
  BOOST_TEST(plan.download_size == 11u);
  BOOST_TEST(plan.nar_size == 22u);
}

BOOST_AUTO_TEST_CASE(what_cannot_be_had_is_unknown) {
  auto chain2 = sp(drv_case("chain2")["drv_path"]); // its .drv is not in the store
  auto missing_src = sp("/nix/store/00000000000000000000000000000000-src");
  auto plan = query_missing(store, {wanted_path::built(chain2), wanted_path::opaque(missing_src)});
  BOOST_TEST((plan.unknown == store_path_set{chain2, missing_src}));
  BOOST_TEST(plan.will_build.empty());
}

BOOST_AUTO_TEST_CASE(a_long_chain_does_not_recurse) {
  // 50,000 derivations, each depending on the one before. Written and
  // registered in one batch (adding each with fsyncs would take minutes).
  std::vector<path_info> infos;
  store_path prev = sp("/nix/store/00000000000000000000000000000000-x");
  for (int i = 0; i < 50000; ++i) {
    derivation d;
    d.platform = "x86_64-linux";
    d.builder = "/bin/sh";
    d.outputs["out"].path = make_store_path("output:out", hash_string(hash_algo::sha256, std::to_string(i)),
                                            "n" + std::to_string(i)).full();
    if (i)
      d.input_drvs[prev.full()] = {"out"};
    std::string text = print_derivation(d);
    path_info info(derivation_store_path(d, "n" + std::to_string(i)));
    test::write_file(store.real_path(info.path), text);
    info.nar_hash = hash_string(hash_algo::sha256, "not checked here");
    info.nar_size = text.size();
    if (i)
      info.references.insert(prev);
    infos.push_back(info);
    prev = info.path;
  }
  store.db().register_valid_paths(infos);
  BOOST_TEST(query_missing(store, {wanted_path::built(prev)}).will_build.size() == 50000u);
}

BOOST_AUTO_TEST_SUITE_END()
