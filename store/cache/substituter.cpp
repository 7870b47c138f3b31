#include "store/cache/substituter.hpp"

#include "store/cache/store_uri.hpp"
#include "store/copy.hpp"
#include "store/io/error.hpp"

namespace kiln {

substitute_outcome substituter::substitute(store& dest, const store_path& path, const trusted_keys& keys,
                                        bool require_sigs) {
  copy_plan plan = plan_copy(*from_, dest, {path});
  if (plan.absent)
    return {substitute_outcome::absent,
            !plan.wanted_by ? "'" + uri_ + "' does not have '" + plan.absent->full() + "'"
                            : "'" + uri_ + "' does not have '" + plan.absent->full() + "', which '" +
                                  plan.wanted_by->full() + "' refers to"};
  if (require_sigs && !trusted_)
    for (auto& info : plan.paths)
      if (!trustworthy(info, keys))
        return {substitute_outcome::untrusted, "the substitute for '" + info.path.full() + "' from '" + uri_ +
                                                   "' is not signed by any of the keys in 'trusted-public-keys'"};
  copy_paths(*from_, dest, plan.paths);
  return {};
}

std::unique_ptr<substituter> make_substituter(const std::string& uri, const http_settings& http) {
  store_uri u = parse_store_uri(uri);
  bool trusted = false;
  if (auto it = u.params.find("trusted"); it != u.params.end()) {
    if (it->second != "0" && it->second != "1")
      throw format_error("substituter '" + uri + "': trusted must be 0 or 1, not '" + it->second + "'");
    trusted = it->second == "1";
  }
  if (u.base.rfind("s3://", 0) == 0 || u.base.rfind("ssh", 0) == 0 || u.base == "daemon" ||
      u.base.rfind("unix://", 0) == 0)
    throw format_error("substituter '" + uri +
                       "' is not supported yet (local stores and file://, http:// and https:// binary caches are)");
  return std::make_unique<substituter>(uri, trusted, open_store_uri(uri, false, http));
}

} // namespace kiln
