#include "store/store.hpp"

#include "store/io/error.hpp"

#include <algorithm>
#include <map>

namespace kiln {

void throw_nar_mismatch(const path_info& expected, const hash& got, uint64_t got_size) {
  if (got_size != expected.nar_size)
    throw error("NAR of '" + expected.path.full() + "' has " + std::to_string(got_size) + " bytes, expected " +
                std::to_string(expected.nar_size));
  throw error("hash mismatch importing path '" + expected.path.full() + "';\n  specified: " +
              expected.nar_hash.to_prefixed(hash_format::base32) + "\n  got:       " +
              got.to_prefixed(hash_format::base32));
}

store_path_set store::query_valid_paths(const store_path_set& paths) {
  store_path_set valid;
  for (auto& p : paths)
    if (is_valid(p))
      valid.insert(p);
  return valid;
}

std::vector<store_path> closure_order(const store_path_set& roots,
                                      const std::function<store_path_set(const store_path&)>& next_of,
                                      bool referrers) {
  std::map<store_path, store_path_set> edges; // path -> its references (or referrers)
  std::vector<store_path> todo(roots.begin(), roots.end());
  while (!todo.empty()) {
    store_path p = todo.back();
    todo.pop_back();
    if (edges.count(p))
      continue;
    auto next = next_of(p);
    next.erase(p);
    for (auto& n : next)
      if (!edges.count(n))
        todo.push_back(n);
    edges.emplace(p, std::move(next));
  }
  // Kahn's algorithm, smallest name first for a stable order. For referrer
  // closures the order is reversed at the end so references still come first.
  std::map<store_path, std::size_t> pending;
  std::map<store_path, std::vector<store_path>> dependents;
  for (auto& [p, deps] : edges) {
    pending[p] = deps.size();
    for (auto& d : deps)
      dependents[d].push_back(p);
  }
  store_path_set ready;
  for (auto& [p, n] : pending)
    if (n == 0)
      ready.insert(p);
  std::vector<store_path> order;
  while (!ready.empty()) {
    store_path p = *ready.begin();
    ready.erase(ready.begin());
    order.push_back(p);
    for (auto& d : dependents[p])
      if (--pending[d] == 0)
        ready.insert(d);
  }
  if (order.size() != edges.size())
    throw error("the reference graph has a cycle (the store database is corrupt)");
  if (referrers)
    std::reverse(order.begin(), order.end());
  return order;
}

std::vector<store_path> compute_closure(store& s, const store_path_set& roots, bool referrers) {
  for (auto& r : roots)
    if (!s.is_valid(r))
      throw error("path '" + r.full() + "' is not valid");
  return closure_order(roots, [&](const store_path& p) {
    if (referrers)
      return s.query_referrers(p);
    auto info = s.query_path_info(p);
    return info ? info->references : store_path_set{};
  }, referrers);
}

} // namespace kiln
