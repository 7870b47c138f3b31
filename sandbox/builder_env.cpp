#include "sandbox/builder_env.hpp"

#include "store/error.hpp"
#include "store/hash.hpp"

#include <set>
#include <sstream>
#include <vector>

namespace kiln::sandbox {
namespace {

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
      throw format_error("exportReferencesGraph: expected pairs of file name and store path, got " +
                         std::to_string(w.size()) + " words");
    for (std::size_t i = 0; i < w.size(); i += 2) {
      if (!valid_graph_file_name(w[i]))
        throw format_error("exportReferencesGraph: invalid file name '" + w[i] + "'");
      if (w[i + 1].rfind(o.store_dir + "/", 0) != 0)
        throw format_error("exportReferencesGraph: '" + w[i + 1] + "' is not in the store");
      if (!o.reference_graph)
        throw error("exportReferencesGraph needs the store's reference graph");
      env.files[w[i]] = o.reference_graph(w[i + 1]);
    }
  }
  return env;
}

} // namespace kiln::sandbox
