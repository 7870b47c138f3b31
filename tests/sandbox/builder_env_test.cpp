#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include "sandbox/builder_env.hpp"
#include "store/io/error.hpp"
#include "tests/support/test_support.hpp"

using namespace kiln;
using namespace kiln::sandbox;

namespace {

derivation vector_drv(const std::string& name) {
  auto& c = test::vector_case("derivations", name);
  return read_derivation_file(test::vectors_dir() + "/" + c["file"].get<std::string>());
}

} // namespace

BOOST_AUTO_TEST_SUITE(builder_env_tests)

BOOST_AUTO_TEST_CASE(the_fixed_variables_and_the_derivations_own) {
  auto drv = vector_drv("trivial");
  builder_env_options o;
  o.cores = 4;
  auto env = plan_builder_env(drv, o);
  auto& v = env.vars;
  BOOST_TEST(v.at("PATH") == "/path-not-set");
  BOOST_TEST(v.at("HOME") == "/homeless-shelter");
  BOOST_TEST(v.at("NIX_STORE") == "/nix/store");
  BOOST_TEST(v.at("NIX_BUILD_CORES") == "4");
  for (auto k : {"NIX_BUILD_TOP", "TMPDIR", "TEMPDIR", "TMP", "TEMP", "PWD"})
    BOOST_TEST(v.at(k) == "/build", k);
  BOOST_TEST(v.at("NIX_LOG_FD") == "2");
  BOOST_TEST(v.at("TERM") == "xterm-256color");
  BOOST_TEST(!v.count("NIX_OUTPUT_CHECKED"));
  for (auto& [k, value] : drv.env)
    BOOST_TEST(v.at(k) == value, k);
  BOOST_TEST(env.files.empty());
  // Nothing else: the fixed ones plus the derivation's.
  BOOST_TEST(v.size() == drv.env.size() + 12);
}

BOOST_AUTO_TEST_CASE(pass_as_file_moves_values_into_hashed_files) {
  auto drv = vector_drv("passFile");
  builder_env_options o;
  o.build_dir = "/tmp/nix-build-x";
  auto env = plan_builder_env(drv, o);
  BOOST_TEST(!env.vars.count("payload"));
  BOOST_TEST(!env.vars.count("other"));
  BOOST_REQUIRE(env.files.size() == 2u);
  // .attr-<nix base32 of sha256("payload")>, as Nix 2.8 names it.
  std::string payload_file = ".attr-" + hash_string(hash_algo::sha256, "payload").to_string(hash_format::base32);
  BOOST_TEST(env.vars.at("payloadPath") == "/tmp/nix-build-x/" + payload_file);
  BOOST_TEST(env.files.at(payload_file) == drv.env.at("payload"));
  BOOST_TEST(env.vars.at("passAsFile") == "payload other");
}

BOOST_AUTO_TEST_CASE(impure_variables_only_for_fixed_outputs) {
  auto fixed = vector_drv("foFlat");
  fixed.env["impureEnvVars"] = "http_proxy  NOT_SET";
  builder_env_options o;
  o.host_env = [](const std::string& n) -> std::optional<std::string> {
    if (n == "http_proxy")
      return std::string("http://proxy:3128");
    return std::nullopt;
  };
  auto env = plan_builder_env(fixed, o);
  BOOST_TEST(env.vars.at("http_proxy") == "http://proxy:3128");
  BOOST_TEST(env.vars.at("NOT_SET") == "");
  BOOST_TEST(env.vars.at("NIX_OUTPUT_CHECKED") == "1");
  auto plain = vector_drv("trivial");
  plain.env["impureEnvVars"] = "http_proxy";
  env = plan_builder_env(plain, o);
  BOOST_TEST(!env.vars.count("http_proxy"));
}

BOOST_AUTO_TEST_CASE(export_references_graph_writes_named_files) {
  auto drv = vector_drv("trivial");
  drv.env["exportReferencesGraph"] = "graph /nix/store/00000000000000000000000000000000-x";
  builder_env_options o;
  std::vector<std::string> asked;
  o.export_references = [&](const std::vector<std::string>& paths, bool json) {
    asked.insert(asked.end(), paths.begin(), paths.end());
    return json ? std::string("[{\"path\":\"") + paths[0] + "\"}]" : std::string("registration of ") + paths[0];
  };
  auto env = plan_builder_env(drv, o);
  BOOST_TEST(env.files.at("graph") == "registration of /nix/store/00000000000000000000000000000000-x");
  BOOST_TEST(asked.size() == 1u);
  // Under structured attributes the graph goes into .attrs.json by name.
  auto structured = drv;
  structured.env.clear();
  structured.env["__json"] =
      R"({"exportReferencesGraph": {"closure": ["/nix/store/11111111111111111111111111111111-y"]}})";
  env = plan_builder_env(structured, o);
  auto attrs = nlohmann::json::parse(env.files.at(".attrs.json"));
  BOOST_TEST(attrs["closure"][0]["path"] == "/nix/store/11111111111111111111111111111111-y");
  BOOST_TEST(!env.files.count("closure"));
  for (auto bad : {"graph", "../up /nix/store/00000000000000000000000000000000-x",
                   ".hidden /nix/store/00000000000000000000000000000000-x", "g /etc/passwd"}) {
    drv.env["exportReferencesGraph"] = bad;
    BOOST_CHECK_THROW(plan_builder_env(drv, o), kiln::error);
  }
}

BOOST_AUTO_TEST_SUITE_END()

// What Nix 2.8 itself gives a builder (sandboxed, as it must be to show a
// store kept elsewhere at /nix/store): the builder writes `env -0` to $out,
// and the plan for the same derivation must match it variable for variable.
BOOST_AUTO_TEST_CASE(matches_the_environment_nix_gives_a_builder) {
  test::temp_dir tmp;
  std::string root = tmp / "store";
  std::string json = tmp / "env.json";
  test::write_file(json, R"({"name": "env-probe", "system": "x86_64-linux", "builder": "/bin/sh",
    "args": ["-c", "/usr/bin/env -0 > $out"], "outputs": {"out": {}},
    "env": {"passAsFile": "big", "big": "a value\nover lines", "plain": "x y  z", "builder": "/bin/sh",
            "name": "env-probe", "system": "x86_64-linux"}})");
  auto run = [](const std::string& cmd) {
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p))
      out.append(buf, n);
    int rc = ::pclose(p);
    BOOST_REQUIRE_MESSAGE(rc == 0, cmd << ": " << out);
    return out.substr(0, out.find('\n'));
  };
  std::string drv_path = run(std::string(KILN_BINARY) + " drv add --store local:" + root + " --json " + json + " 2>&1");
  std::string out = run("nix-store --store " + root + " --realise " + drv_path +
                        " --option sandbox-paths '/bin /lib /lib64 /usr' --option cores 3 2>&1 | tail -1");
  std::string dump = test::read_file(root + out);
  std::map<std::string, std::string> nix;
  for (std::size_t pos = 0, end; (end = dump.find('\0', pos)) != std::string::npos; pos = end + 1) {
    std::string kv = dump.substr(pos, end - pos);
    nix[kv.substr(0, kv.find('='))] = kv.substr(kv.find('=') + 1);
  }
  builder_env_options o;
  o.cores = 3;
  auto plan = plan_builder_env(read_derivation_file(root + drv_path), o);
  for (auto& [k, value] : plan.vars)
    BOOST_TEST((nix.count(k) && nix.at(k) == value), k << ": planned '" << value << "', Nix gave '"
                                                        << (nix.count(k) ? nix.at(k) : "(unset)") << "'");
  for (auto& [k, value] : nix)
    BOOST_TEST(plan.vars.count(k) == 1u, k << " is set by Nix but not planned");
}
