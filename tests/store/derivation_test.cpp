#include <boost/test/unit_test.hpp>

#include "store/format/derivation.hpp"
#include "store/format/derivation_hash.hpp"
#include "store/format/derivation_json.hpp"
#include "store/io/error.hpp"
#include "tests/support/test_support.hpp"

using namespace kiln;

namespace {

std::string drv_dir() {
  return test::vectors_dir() + "/drv";
}

const nlohmann::json& cases() {
  return test::manifest()["derivations"]["cases"];
}

} // namespace

BOOST_AUTO_TEST_SUITE(derivation_tests)

BOOST_AUTO_TEST_CASE(every_vector_round_trips_byte_for_byte) {
  BOOST_REQUIRE_GE(cases().size(), 13u);
  for (auto& c : cases()) {
    std::string text = test::read_file(test::vectors_dir() + "/" + c["file"].get<std::string>());
    auto drv = parse_derivation(text);
    BOOST_TEST(print_derivation(drv) == text, c["case"]);
  }
}

BOOST_AUTO_TEST_CASE(every_vector_has_nix_drv_path_inputs_and_name) {
  for (auto& c : cases()) {
    std::string file = test::vectors_dir() + "/" + c["file"].get<std::string>();
    auto drv = read_derivation_file(file);
    std::string name = derivation_name(drv, file);
    BOOST_TEST(name == c["name"].get<std::string>());
    BOOST_TEST(derivation_store_path(drv, name).full() == c["drv_path"].get<std::string>());
    std::map<std::string, std::set<std::string>> inputs;
    for (auto& [p, outs] : c["input_drvs"].items())
      inputs[p] = outs.get<std::set<std::string>>();
    BOOST_TEST((drv.input_drvs == inputs), c["case"]);
    BOOST_TEST((drv.input_srcs == c["input_srcs"].get<std::set<std::string>>()), c["case"]);
    BOOST_TEST(drv.is_fixed_output() == !c["fixed_output"].is_null(), c["case"]);
  }
}

BOOST_AUTO_TEST_CASE(every_vector_has_nix_modulo_hashes) {
  derivation_hasher hasher(directory_loader(drv_dir()));
  for (auto& c : cases()) {
    auto drv = read_derivation_file(test::vectors_dir() + "/" + c["file"].get<std::string>());
    auto& expect = c["hash_derivation_modulo"];
    auto masked = hasher.hash_modulo(drv, true);
    for (auto& [out, hex] : expect["for_own_outputs_masked"].items())
      BOOST_TEST(masked.at(out).base16() == hex.get<std::string>(), c["case"] << " " << out);
    auto& unmasked = hasher.input_hash(c["drv_path"]);
    for (auto& [out, hex] : expect["when_used_as_input_unmasked"].items())
      BOOST_TEST(unmasked.at(out).base16() == hex.get<std::string>(), c["case"] << " " << out);
  }
}

BOOST_AUTO_TEST_CASE(every_vector_recomputes_its_output_paths) {
  derivation_hasher hasher(directory_loader(drv_dir()));
  for (auto& c : cases()) {
    std::string file = test::vectors_dir() + "/" + c["file"].get<std::string>();
    auto drv = read_derivation_file(file);
    auto paths = compute_output_paths(drv, derivation_name(drv, file), hasher);
    BOOST_TEST(paths.size() == c["outputs"].size());
    for (auto& [out, p] : c["outputs"].items()) {
      BOOST_TEST(paths.at(out).full() == p.get<std::string>(), c["case"] << " " << out);
      BOOST_TEST(drv.outputs.at(out).path == p.get<std::string>());
    }
  }
}

BOOST_AUTO_TEST_CASE(fixed_output_inputs_count_by_their_hash_not_their_recipe) {
  // Changing a fixed-output derivation's builder changes its own .drv path
  // but neither its output path nor the modulo hash dependents see.
  auto fixed = read_derivation_file(drv_dir() + "/x51njz4426vkbmv68b3qg8jn0zfzxmgb-fixed-flat.drv");
  auto changed = fixed;
  changed.builder += "-changed";
  derivation_hasher hasher([](const std::string&) -> derivation { throw error("no inputs"); });
  BOOST_TEST((hasher.hash_modulo(fixed, false) == hasher.hash_modulo(changed, false)));
  BOOST_TEST(derivation_store_path(fixed, "fixed-flat").full() !=
             derivation_store_path(changed, "fixed-flat").full());
}

BOOST_AUTO_TEST_CASE(json_form_carries_every_field) {
  for (auto& c : cases()) {
    std::string file = test::vectors_dir() + "/" + c["file"].get<std::string>();
    auto drv = read_derivation_file(file);
    auto j = nlohmann::json::parse(derivation_to_json(drv, c["drv_path"]));
    auto& body = j.at(c["drv_path"].get<std::string>());
    for (auto& [out, p] : c["outputs"].items())
      BOOST_TEST(body["outputs"][out]["path"] == p);
    BOOST_TEST(body["inputSrcs"] == c["input_srcs"]);
    BOOST_TEST(body["inputDrvs"] == c["input_drvs"]);
    BOOST_TEST(body["system"].get<std::string>() == drv.platform);
    BOOST_TEST(body["builder"].get<std::string>() == drv.builder);
    BOOST_TEST((body["args"].get<std::vector<std::string>>() == drv.args));
    BOOST_TEST((body["env"].get<std::map<std::string, std::string>>() == drv.env), c["case"]);
    if (drv.is_fixed_output()) {
      BOOST_TEST(body["outputs"]["out"]["hashAlgo"] == drv.outputs["out"].hash_algo);
      BOOST_TEST(body["outputs"]["out"]["hash"] == drv.outputs["out"].hash);
    }
  }
}

BOOST_AUTO_TEST_CASE(escapes_survive_parse_and_print) {
  derivation d;
  d.outputs["out"] = {"", "", ""};
  d.platform = "x86_64-linux";
  d.builder = "/bin/sh";
  d.args = {"-c", "echo \"a\\b\"\n\r\t$x"};
  d.env["k"] = "line1\nline2\x01\xc3\xa9";
  auto text = print_derivation(d);
  BOOST_TEST(text.find("\\\"a\\\\b\\\"\\n\\r\\t$x") != std::string::npos, text);
  BOOST_TEST((parse_derivation(text) == d));
}

BOOST_AUTO_TEST_CASE(masking_blanks_output_paths_and_their_env_vars) {
  auto drv = read_derivation_file(drv_dir() + "/8mz1l5p6yk1jrs4ncfgqrwlbv9va4is2-multi.drv");
  auto masked = print_derivation(drv, true);
  for (auto& [name, o] : drv.outputs)
    BOOST_TEST(masked.find(o.path) == std::string::npos, name);
  BOOST_TEST(masked.find("(\"dev\",\"\")") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
