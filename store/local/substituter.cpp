#include "store/local/substituter.hpp"

#include "store/io/error.hpp"

#include <map>
#include <set>
#include <vector>

namespace kiln {

std::pair<std::string, bool> substituter::parse_directory_uri(const std::string& uri, std::string_view scheme) {
  if (uri.compare(0, scheme.size(), scheme) != 0)
    throw format_error("substituter '" + uri + "' does not start with '" + std::string(scheme) + "'");
  std::string dir = uri.substr(scheme.size());
  bool trusted = false;
  if (auto q = dir.find('?'); q != std::string::npos) {
    std::string query = dir.substr(q + 1);
    dir.resize(q);
    if (query == "trusted=1")
      trusted = true;
    else if (query != "trusted=0")
      throw format_error("substituter '" + uri + "': unknown parameter '" + query + "' (only trusted=1)");
  }
  if (dir.empty() || dir[0] != '/')
    throw format_error("substituter '" + uri + "': expected an absolute directory after '" + std::string(scheme) +
                       "'");
  return {dir, trusted};
}

substitute_outcome substituter::substitute(local_store& dest, const store_path& path, const trusted_keys& keys,
                                        bool require_sigs) {
  // The closure of `path` that `dest` lacks, references before referrers.
  std::vector<path_info> order;
  std::set<store_path> seen;
  std::vector<std::pair<store_path, bool>> stack{{path, false}};
  std::map<store_path, path_info> infos;
  while (!stack.empty()) {
    auto [p, expanded] = stack.back();
    stack.pop_back();
    if (expanded) {
      order.push_back(infos.at(p));
      continue;
    }
    if (!seen.insert(p).second)
      continue;
    dest.add_temp_root(p);
    if (dest.db().is_valid(p))
      continue;
    auto info = query(p);
    if (!info)
      return {substitute_outcome::absent,
              p == path ? "'" + uri_ + "' does not have '" + p.full() + "'"
                        : "'" + uri_ + "' does not have '" + p.full() + "', which '" + path.full() + "' refers to"};
    if (require_sigs && !trusted_ && !info->ca) {
      std::set<std::string> refs;
      for (auto& r : info->references)
        refs.insert(r.full());
      if (!has_valid_signature(path_fingerprint(p.full(), info->nar_hash, info->nar_size, refs), info->sigs, keys))
        return {substitute_outcome::untrusted, "the substitute for '" + p.full() + "' from '" + uri_ +
                                                   "' is not signed by any of the keys in 'trusted-public-keys'"};
    }
    stack.push_back({p, true});
    for (auto& r : info->references)
      if (r != p)
        stack.push_back({r, false});
    infos.emplace(p, std::move(*info));
  }
  for (auto& info : order) {
    if (dest.db().is_valid(info.path))
      continue;
    path_info fresh = info;
    fresh.ultimate = false;
    fresh.registration_time = 0;
    copy(dest, fresh);
  }
  return {};
}

} // namespace kiln
