// `kiln store path-info` and `kiln store query`: read-only questions.
#include "store/local/closure.hpp"
#include "store/format/derivation.hpp"
#include "store/io/error.hpp"
#include "store/local/missing.hpp"
#include "store/local/verify.hpp"
#include "tools/kiln/commands.hpp"
#include "tools/kiln/store_cli.hpp"
#include "store/cache/store_uri.hpp"
#include "store/cache/substituter.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

namespace kiln::cmd {

extern const char* store_usage;

namespace {

// The fields and order of `nix path-info --json`; narHash as sha256:<base32>
// as the local-store issue asks (Nix 2.8 itself prints SRI there).
nlohmann::ordered_json info_json(const path_info& info, bool sigs) {
  nlohmann::ordered_json j;
  j["path"] = info.path.full();
  j["narHash"] = info.nar_hash.to_prefixed(hash_format::base32);
  j["narSize"] = info.nar_size;
  auto refs = nlohmann::ordered_json::array();
  for (auto& r : info.references)
    refs.push_back(r.full());
  j["references"] = refs;
  if (info.ca)
    j["ca"] = *info.ca;
  if (info.deriver)
    j["deriver"] = info.deriver->full();
  j["registrationTime"] = info.registration_time;
  if (info.ultimate)
    j["ultimate"] = true;
  if (sigs && !info.sigs.empty())
    j["signatures"] = info.sigs;
  return j;
}

} // namespace

int store_missing(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option, {"--json"}, cli::setting_option}, store_usage);
  cli::expect_positional(a, 1, SIZE_MAX, "DRV or PATH");
  auto store = open_any_store(a);
  std::vector<wanted_path> wanted;
  for (auto& t : a.positional)
    wanted.push_back(parse_wanted(*store, t));
  // A local store asks the configured substituters; a daemon asks its own.
  missing_plan plan;
  if (auto* local = dynamic_cast<local_store*>(store.get())) {
    settings config = load_settings(a);
    substituter_set subs(config.get_words("substituters"), cache_client_settings_from(config));
    plan = query_missing(*local, wanted, subs.as_query());
  } else {
    plan = store->query_missing(wanted);
  }
  auto list = [](const store_path_set& s) {
    std::vector<std::string> v;
    for (auto& p : s)
      v.push_back(p.full());
    return v;
  };
  if (a.has("--json")) {
    nlohmann::ordered_json j;
    j["willBuild"] = list(plan.will_build);
    j["willSubstitute"] = list(plan.will_substitute);
    j["unknown"] = list(plan.unknown);
    j["downloadSize"] = plan.download_size;
    j["narSize"] = plan.nar_size;
    std::cout << j.dump() << '\n';
    return 0;
  }
  auto section = [&](const store_path_set& s, const std::string& heading) {
    if (s.empty())
      return;
    std::cout << heading << '\n';
    for (auto& p : s)
      std::cout << "  " << p.full() << '\n';
  };
  section(plan.will_build, "these " + std::to_string(plan.will_build.size()) + " derivations will be built:");
  char sizes[96];
  std::snprintf(sizes, sizeof sizes, "(%.2f MiB download, %.2f MiB unpacked)",
                static_cast<double>(plan.download_size) / 1048576.0,
                static_cast<double>(plan.nar_size) / 1048576.0);
  section(plan.will_substitute,
          "these " + std::to_string(plan.will_substitute.size()) + " paths will be fetched " + sizes + ":");
  section(plan.unknown, "don't know how to build these paths:");
  if (plan.will_build.empty() && plan.will_substitute.empty() && plan.unknown.empty())
    std::cout << "nothing is missing\n";
  return 0;
}

int store_path_info(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option, {"--json"}, {"--recursive", false, "-r"}, {"--sigs"}}, store_usage);
  cli::expect_positional(a, 1, SIZE_MAX, "PATH");
  auto store = open_any_store(a);
  auto roots = valid_paths(*store, a.positional);
  std::vector<store_path> paths = a.has("--recursive")
                                    ? compute_closure(*store, roots)
                                    : std::vector<store_path>(roots.begin(), roots.end());
  auto all = nlohmann::ordered_json::array();
  for (auto& p : paths) {
    auto info = *store->query_path_info(p);
    if (a.has("--json")) {
      all.push_back(info_json(info, a.has("--sigs")));
    } else {
      std::cout << p.full() << '\t' << info.nar_size;
      if (a.has("--sigs"))
        for (auto& s : info.sigs)
          std::cout << '\t' << s;
      std::cout << '\n';
    }
  }
  if (a.has("--json"))
    std::cout << all.dump() << '\n';
  return 0;
}

int store_query(const std::vector<std::string>& args) {
  const std::vector<std::string> modes = {"--references", "--referrers", "--requisites",
                                          "--deriver", "--outputs"};
  std::vector<cli::option_spec> spec = {store_option};
  for (auto& m : modes)
    spec.push_back({m});
  auto a = cli::parse(args, spec, store_usage);
  std::string mode;
  for (auto& m : modes)
    if (a.has(m)) {
      if (!mode.empty())
        throw cli::usage_error("choose one of " + mode + " and " + m);
      mode = m;
    }
  if (mode.empty())
    throw cli::usage_error("missing --references, --referrers, --requisites, --deriver or --outputs");
  cli::expect_positional(a, 1, SIZE_MAX, "PATH");
  auto store = open_any_store(a);
  if (mode == "--requisites") {
    for (auto& p : compute_closure(*store, valid_paths(*store, a.positional)))
      std::cout << p.full() << '\n';
    return 0;
  }
  for (auto& text : a.positional) {
    auto p = valid_path(*store, text);
    if (mode == "--references") {
      auto info = store->query_path_info(p); // kept: the loop reads into it
      for (auto& r : info->references)
        std::cout << r.full() << '\n';
    } else if (mode == "--referrers") {
      for (auto& r : store->query_referrers(p))
        std::cout << r.full() << '\n';
    } else if (mode == "--deriver") {
      auto info = store->query_path_info(p);
      std::cout << (info->deriver ? info->deriver->full() : "unknown-deriver") << '\n';
    } else if (p.is_derivation()) { // --outputs of a .drv: as recorded with it
      for (auto& [name, out] : store->query_derivation_outputs(p))
        std::cout << out.full() << '\n';
    } else {
      std::cout << p.full() << '\n'; // a plain path is its own output, as in Nix
    }
  }
  return 0;
}

int store_verify(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option, {"--check-contents"}, {"--all"}, {"--json"}}, store_usage);
  if (a.has("--all") == !a.positional.empty())
    throw cli::usage_error("give either --all or the PATHs to verify");
  auto any = open_any_store(a);
  auto* store = dynamic_cast<local_store*>(any.get());
  if (!store && !a.has("--all"))
    throw cli::usage_error("a daemon verifies its whole store: give --all, or a local --store to verify PATHs");
  std::vector<store_path> paths;
  std::vector<verify_problem> problems;
  std::vector<link_problem> links;
  if (!store) {
    paths = any->query_all_valid_paths(); // what was there to check
    problems = any->verify(a.has("--check-contents"));
  } else {
    if (a.has("--all"))
      paths = store->db().query_all_valid_paths();
    for (auto& text : a.positional)
      paths.push_back(store->parse_path(text));
    problems = verify_paths(*store, paths, a.has("--check-contents"));
    // The store's shared copies of files (kiln store optimise), with the whole store's contents.
    if (a.has("--all") && a.has("--check-contents"))
      links = check_links(*store);
  }
  if (a.has("--json")) {
    auto j = nlohmann::ordered_json::array();
    for (auto& p : problems)
      j.push_back({{"path", p.path.full()}, {"problem", p.problem}});
    for (auto& l : links)
      j.push_back({{"link", l.link}, {"problem", "contents changed: hash " + l.actual + ", named for " + l.expected}});
    std::cout << j.dump() << '\n';
  } else {
    for (auto& p : problems)
      std::cerr << "kiln: " << p.path.full() << ": " << p.problem << '\n';
    for (auto& l : links)
      std::cerr << "kiln: " << l.link << ": contents changed: hash " << l.actual << ", named for " << l.expected << '\n';
    std::size_t n = problems.size() + links.size();
    std::cerr << "verified " << paths.size() << " paths"
              << (a.has("--check-contents") ? " (contents hashed)" : "") << ": "
              << n << " problem" << (n == 1 ? "" : "s") << '\n';
  }
  return problems.empty() && links.empty() ? 0 : 1;
}

int store_sign(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option, {"--key-file", true}}, store_usage);
  cli::expect_positional(a, 1, SIZE_MAX, "PATH to sign");
  if (!a.values.count("--key-file"))
    throw cli::usage_error("missing --key-file SECRET-KEY-FILE");
  auto key = read_secret_key_file(a.values.at("--key-file"));
  auto store = open_any_store(a);
  for (auto& p : valid_paths(*store, a.positional))
    store->add_signatures(p, {key.sign(fingerprint_of(*store->query_path_info(p)))});
  return 0;
}

int store_verify_sigs(const std::vector<std::string>& args) {
  auto a = cli::parse(args, {store_option, {"--trusted-public-keys", true}}, store_usage);
  cli::expect_positional(a, 1, SIZE_MAX, "PATH to check");
  std::vector<std::string> texts;
  std::string keys = a.value_or("--trusted-public-keys", "");
  for (std::size_t pos = 0; pos < keys.size();) { // space-separated, as in Nix's setting
    auto end = keys.find(' ', pos);
    auto k = keys.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (!k.empty())
      texts.push_back(k);
    pos = end == std::string::npos ? keys.size() : end + 1;
  }
  if (texts.empty())
    throw cli::usage_error("missing --trusted-public-keys 'NAME:KEY ...'");
  auto trusted = make_trusted_keys(texts);
  auto store = open_any_store(a);
  int untrusted = 0;
  for (auto& p : valid_paths(*store, a.positional)) {
    auto info = *store->query_path_info(p);
    bool ok = has_valid_signature(fingerprint_of(info), info.sigs, trusted);
    std::cout << p.full() << (ok ? ": signed by a trusted key\n" : ": NO valid signature by a trusted key\n");
    untrusted += !ok;
  }
  return untrusted ? 1 : 0;
}

} // namespace kiln::cmd
