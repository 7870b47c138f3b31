#include "store/local/verify.hpp"

#include "store/io/error.hpp"
#include "store/format/find_cycles.hpp"
#include "store/format/nar.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"

#include <algorithm>

#include <sys/stat.h>

namespace kiln {

std::string fingerprint_of(const path_info& info) {
  std::set<std::string> refs;
  for (auto& r : info.references)
    refs.insert(r.full());
  return path_fingerprint(info.path.full(), info.nar_hash, info.nar_size, refs);
}

namespace {

// A cycle among valid paths (which Kiln's builds refuse, but an older Kiln
// or another tool may have registered) breaks export, copying and GC. The
// walk goes on through the database past the paths asked about.
void report_reference_cycles(local_store& store, const std::vector<store_path>& paths,
                             std::map<store_path, store_path_set>& references, std::vector<verify_problem>& problems) {
  auto refs_of = [&](const store_path& p) {
    auto it = references.find(p);
    if (it == references.end())
      it = references.emplace(p, store.db().is_valid(p) ? store.db().query_references(p) : store_path_set{}).first;
    return std::vector<store_path>(it->second.begin(), it->second.end());
  };
  for (auto& cycle : find_cycles(paths, refs_of)) {
    std::string shown;
    for (auto& p : cycle)
      shown += (shown.empty() ? "" : " -> ") + p.full();
    problems.push_back({cycle.front(), "reference cycle: " + shown});
  }
}

} // namespace

std::vector<verify_problem> verify_paths(local_store& store, const std::vector<store_path>& paths,
                                         bool check_contents) {
  std::vector<verify_problem> problems;
  std::map<store_path, store_path_set> references;
  for (auto& p : paths) {
    auto info = store.db().query_path_info(p);
    if (!info) {
      problems.push_back({p, "not valid"});
      continue;
    }
    references.emplace(p, info->references);
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
      if (got.nar_hash != info->nar_hash || got.nar_size != info->nar_size) {
        std::string actual = got.nar_hash.to_prefixed(hash_format::base32);
        std::string expected = info->nar_hash.to_prefixed(hash_format::base32);
        problems.push_back({p,
                            "contents changed: hash " + actual + " (" + std::to_string(got.nar_size) +
                                " bytes), recorded " + expected + " (" + std::to_string(info->nar_size) + " bytes)",
                            expected, actual});
      }
    } catch (const error& e) {
      problems.push_back({p, std::string("unreadable: ") + e.what()});
    }
  }
  report_reference_cycles(store, paths, references, problems);
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

std::vector<link_problem> check_links(const local_store& store) {
  std::vector<link_problem> problems;
  std::string dir = store.layout().store_dir() + "/.links";
  if (!path_exists(dir))
    return problems;
  unique_fd fd = open_directory(dir);
  std::vector<std::string> names = read_directory(fd.get(), dir);
  std::sort(names.begin(), names.end());
  for (auto& name : names) {
    std::string link = dir + "/" + name;
    std::string actual = hash_path(link).nar_hash.to_string(hash_format::base32);
    if (actual != name)
      problems.push_back({link, name, actual});
  }
  return problems;
}

} // namespace kiln
