#include "sandbox/builder_env.hpp"

#include "store/io/error.hpp"
#include "store/format/hash.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

namespace kiln::sandbox {
namespace {

// Nix's shell quoting: '...' with each ' written as '\''.
std::string shell_escape(const std::string& s) {
  std::string r = "'";
  for (char c : s)
    r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

// A JSON value as a bash word, if it is simple (what .attrs.sh can hold).
std::optional<std::string> simple_word(const nlohmann::json& v) {
  if (v.is_string())
    return shell_escape(v.get<std::string>());
  if (v.is_number_integer())
    return v.dump();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::ceil(d) == d)
      return std::to_string(static_cast<long long>(d));
    return std::nullopt;
  }
  if (v.is_null())
    return std::string("''");
  if (v.is_boolean())
    return std::string(v.get<bool>() ? "1" : "");
  return std::nullopt;
}

bool shell_name(const std::string& n) {
  if (n.empty() || !(std::isalpha(static_cast<unsigned char>(n[0])) || n[0] == '_'))
    return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
      return false;
  return true;
}

// .attrs.json (with "outputs" mapping names to paths) and .attrs.sh (bash
// declarations of every simple value, array and map), as Nix 2.8 writes them.
void write_structured_attrs(const derivation& drv, const std::string& text, const builder_env_options& o,
                            builder_env& env) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw format_error(std::string("derivation attribute '__json' is not valid JSON: ") + e.what());
  }
  if (!j.is_object())
    throw format_error("derivation attribute '__json' is not a JSON object");
  nlohmann::json outputs = nlohmann::json::object();
  for (auto& [name, out] : drv.outputs)
    outputs[name] = out.path;
  j["outputs"] = outputs;
  // {"name": [paths...]}: each name gets the exported closure's path infos.
  if (auto e = j.find("exportReferencesGraph"); e != j.end() && e->is_object()) {
    std::map<std::string, nlohmann::json> exported;
    for (auto& [name, paths] : e->items()) {
      std::vector<std::string> list;
      for (auto& p : paths.is_array() ? paths : nlohmann::json::array({paths})) {
        if (!p.is_string())
          throw format_error("exportReferencesGraph: '" + name + "' must list store paths");
        list.push_back(p.get<std::string>());
      }
      if (!o.export_references)
        throw error("exportReferencesGraph needs the store's reference graph");
      exported[name] = nlohmann::json::parse(o.export_references(list, true));
    }
    for (auto& [name, value] : exported)
      j[name] = std::move(value);
  }
  env.files[".attrs.json"] = j.dump();
  std::string sh;
  for (auto& [key, value] : j.items()) {
    if (!shell_name(key))
      continue;
    if (auto w = simple_word(value)) {
      sh += "declare " + key + "=" + *w + "\n";
    } else if (value.is_array()) {
      std::string words;
      bool ok = true;
      for (auto& x : value) {
        auto w2 = simple_word(x);
        if (!(ok = w2.has_value()))
          break;
        words += *w2 + " ";
      }
      if (ok)
        sh += "declare -a " + key + "=(" + words + ")\n";
    } else if (value.is_object()) {
      std::string words;
      bool ok = true;
      for (auto& [k2, x] : value.items()) {
        auto w2 = simple_word(x);
        if (!(ok = w2.has_value()))
          break;
        words += "[" + shell_escape(k2) + "]=" + *w2 + " ";
      }
      if (ok)
        sh += "declare -A " + key + "=(" + words + ")\n";
    }
  }
  env.files[".attrs.sh"] = sh;
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;)
    out.push_back(w);
  return out;
}

// A plain file name in the build directory: no slashes, no dot files, no
// way out of the directory.
bool valid_graph_file_name(const std::string& n) {
  if (n.empty() || !(std::isalpha(static_cast<unsigned char>(n[0])) || n[0] == '_'))
    return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'))
      return false;
  return true;
}

} // namespace

builder_env plan_builder_env(const derivation& drv, const builder_env_options& o) {
  builder_env env;
  auto& v = env.vars;
  // A shell given no PATH makes one up (/bin:/usr/bin...); a dummy keeps the
  // build from finding host tools by accident.
  v["PATH"] = "/path-not-set";
  // A home that does not exist, so nothing looks up the build user's.
  v["HOME"] = "/homeless-shelter";
  v["NIX_STORE"] = o.store_dir;
  v["NIX_BUILD_CORES"] = std::to_string(o.cores);

  // The derivation's own variables, except those passed as files (they can
  // exceed what exec's environment may hold).
  if (auto json = drv.env.find("__json"); json != drv.env.end()) {
    // Structured attributes: the builder reads .attrs.json / .attrs.sh
    // instead of the environment, and the derivation's variables stay out.
    write_structured_attrs(drv, json->second, o, env);
    // Where the builder finds them (Nix 2.8 gives its host-side path, which
    // a sandboxed builder cannot open; later Nix and Kiln give this one).
    v["NIX_ATTRS_JSON_FILE"] = o.build_dir + "/.attrs.json";
    v["NIX_ATTRS_SH_FILE"] = o.build_dir + "/.attrs.sh";
  } else {
  std::set<std::string> as_file;
  if (auto it = drv.env.find("passAsFile"); it != drv.env.end())
    for (auto& w : words(it->second))
      as_file.insert(w);
  for (auto& [name, value] : drv.env) {
    if (!as_file.count(name)) {
      v[name] = value;
      continue;
    }
    // Named by the attribute's hash, as Nix 2.8 names them.
    std::string file = ".attr-" + hash_string(hash_algo::sha256, name).to_string(hash_format::base32);
    env.files[file] = value;
    v[name + "Path"] = o.build_dir + "/" + file;
  }

  }
  v["NIX_BUILD_TOP"] = o.build_dir;
  v["TMPDIR"] = v["TEMPDIR"] = v["TMP"] = v["TEMP"] = o.build_dir;
  // Explicit, since a chrooted builder cannot always work out its cwd.
  v["PWD"] = o.build_dir;

  if (drv.is_fixed_output()) {
    v["NIX_OUTPUT_CHECKED"] = "1";
    // Impure by design, and harmless: the output's hash is known in advance.
    if (auto it = drv.env.find("impureEnvVars"); it != drv.env.end())
      for (auto& name : words(it->second))
        v[name] = o.host_env ? o.host_env(name).value_or("") : "";
  }
  v["NIX_LOG_FD"] = "2";
  v["TERM"] = "xterm-256color";

  if (auto it = drv.env.find("exportReferencesGraph"); it != drv.env.end()) {
    auto w = words(it->second);
    if (w.size() % 2 != 0)
      throw build_input_rejected("odd number of tokens in 'exportReferencesGraph': '" + it->second + "'");
    for (std::size_t i = 0; i < w.size(); i += 2) {
      if (!valid_graph_file_name(w[i]))
        throw format_error("invalid file name '" + w[i] + "' in 'exportReferencesGraph'");
      if (w[i + 1].rfind(o.store_dir + "/", 0) != 0)
        throw build_input_rejected("'exportReferencesGraph' contains a non-store path '" + w[i + 1] + "'");
      if (!o.export_references)
        throw error("exportReferencesGraph needs the store's reference graph");
      env.files[w[i]] = o.export_references({w[i + 1]}, false);
    }
  }
  return env;
}

} // namespace kiln::sandbox
