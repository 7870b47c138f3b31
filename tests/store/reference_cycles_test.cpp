// Reference cycles: refused among a build's outputs (as Nix), reported by
// verify among valid paths, and the walk that finds them.
#include <boost/test/unit_test.hpp>

#include "store/local/build_outputs.hpp"
#include "store/format/find_cycles.hpp"
#include "store/local/verify.hpp"
#include "tests/support/test_support.hpp"

#include <map>

using namespace kiln;

namespace {

store_path path_named(const std::string& name, char hash_char) {
  return parse_store_path("/nix/store/" + std::string(32, hash_char) + "-" + name);
}

std::string refusal(const std::map<std::string, store_path_set>& refs, const std::map<std::string, store_path>& outs) {
  try {
    refuse_output_cycles(parse_store_path("/nix/store/" + std::string(32, 'x') + "-x.drv"), refs, outs);
  } catch (const output_rejected& e) {
    return e.what();
  }
  return "";
}

} // namespace

BOOST_AUTO_TEST_SUITE(reference_cycles)

BOOST_AUTO_TEST_CASE(finds_cycles_in_walk_order_and_ignores_self_references) {
  std::map<int, std::vector<int>> g{{1, {1, 2}}, {2, {3}}, {3, {1, 4}}, {4, {4}}, {5, {6}}, {6, {5}}};
  auto kids = [&](int n) { return g[n]; };
  auto cycles = find_cycles(std::vector<int>{1, 4, 5}, kids);
  BOOST_TEST_REQUIRE(cycles.size() == 2u);
  BOOST_TEST((cycles[0] == std::vector<int>{1, 2, 3, 1}));
  BOOST_TEST((cycles[1] == std::vector<int>{5, 6, 5}));
  BOOST_TEST(find_cycles(std::vector<int>{4}, kids).empty());
  BOOST_TEST(find_cycles(std::vector<int>{1, 5}, kids, true).size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_deep_chain_is_walked_without_recursion) {
  auto kids = [](int n) { return n < 1000000 ? std::vector<int>{n + 1} : std::vector<int>{0}; };
  auto cycles = find_cycles(std::vector<int>{0}, kids);
  BOOST_TEST_REQUIRE(cycles.size() == 1u);
  BOOST_TEST(cycles[0].size() == 1000002u);
}

BOOST_AUTO_TEST_CASE(refuses_outputs_that_refer_to_each_other_naming_them_as_nix_does) {
  auto out = path_named("out", '0'), dev = path_named("dev", '1'), bin = path_named("bin", '2');
  std::map<std::string, store_path> outs{{"out", out}, {"dev", dev}, {"bin", bin}};
  // dev -> out -> dev: Nix visits dev first and meets it again from out.
  auto msg = refusal({{"out", {dev, out}}, {"dev", {out}}, {"bin", {}}}, outs);
  BOOST_TEST(msg.find("cycle detected in build of '/nix/store/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-x.drv' in the "
                      "references of output 'dev' from output 'out'") == 0,
             msg);
  // References one way only, and to itself, are fine.
  BOOST_TEST(refusal({{"out", {out}}, {"dev", {out, dev}}, {"bin", {dev, out}}}, outs).empty());
}

BOOST_AUTO_TEST_CASE(verify_reports_a_cycle_among_valid_paths) {
  test::temp_dir tmp;
  local_store store(store_layout{tmp / "root"});
  auto a = path_named("a-one", 'a'), b = path_named("b-two", 'b');
  test::add_built_output(store, a);
  test::add_built_output(store, b);
  auto ia = *store.db().query_path_info(a), ib = *store.db().query_path_info(b);
  ia.references = {b};
  ib.references = {a};
  store.db().register_valid_paths({ia, ib}); // as an older tool might have
  auto problems = verify_paths(store, {a}, false);
  BOOST_TEST_REQUIRE(problems.size() == 1u);
  BOOST_TEST(problems[0].problem == "reference cycle: " + a.full() + " -> " + b.full() + " -> " + a.full());
  BOOST_TEST(verify_paths(store, {a, b}, false).size() == 1u); // one cycle, reported once
}

BOOST_AUTO_TEST_SUITE_END()
