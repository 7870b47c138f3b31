#include "store/verify.hpp"

#include "store/error.hpp"
#include "store/nar.hpp"

#include <sys/stat.h>

namespace kiln {

std::string fingerprint_of(const path_info& info) {
  std::set<std::string> refs;
  for (auto& r : info.references)
    refs.insert(r.full());
  return path_fingerprint(info.path.full(), info.nar_hash, info.nar_size, refs);
}

std::vector<verify_problem> verify_paths(local_store& store, const std::vector<store_path>& paths,
                                         bool check_contents) {
  std::vector<verify_problem> problems;
  for (auto& p : paths) {
    auto info = store.db().query_path_info(p);
    if (!info) {
      problems.push_back({p, "not valid"});
      continue;
    }
    struct stat st;
    if (::lstat(store.real_path(p).c_str(), &st) != 0) {
      problems.push_back({p, "missing from " + store.layout().store_dir()});
      continue;
    }
    for (auto& r : info->references)
      if (!store.db().is_valid(r))
        problems.push_back({p, "reference " + r.full() + " is not valid"});
    if (!check_contents)
      continue;
    try {
      auto got = hash_path(store.real_path(p));
      if (got.nar_hash != info->nar_hash || got.nar_size != info->nar_size)
        problems.push_back({p, "contents changed: hash " + got.nar_hash.to_prefixed(hash_format::base32) +
                                 " (" + std::to_string(got.nar_size) + " bytes), recorded " +
                                 info->nar_hash.to_prefixed(hash_format::base32) + " (" +
                                 std::to_string(info->nar_size) + " bytes)"});
    } catch (const error& e) {
      problems.push_back({p, std::string("unreadable: ") + e.what()});
    }
  }
  return problems;
}

void sign_paths(local_store& store, const std::vector<store_path>& paths, const secret_key& key) {
  std::vector<path_info> updated;
  for (auto& p : paths) {
    auto info = store.db().query_path_info(p);
    if (!info)
      throw error("cannot sign '" + p.full() + "': it is not valid");
    info->sigs.insert(key.sign(fingerprint_of(*info)));
    updated.push_back(*info);
  }
  store.db().register_valid_paths(updated); // one transaction; updates in place
}

} // namespace kiln
