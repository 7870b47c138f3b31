#include "store/closure.hpp"

#include "store/error.hpp"

#include <algorithm>
#include <map>

namespace kiln {

std::vector<store_path> compute_closure(store_db& db, const store_path_set& roots, bool referrers) {
  std::map<store_path, store_path_set> edges; // path -> its references (or referrers)
  std::vector<store_path> todo(roots.begin(), roots.end());
  for (auto& r : roots)
    if (!db.is_valid(r))
      throw error("path '" + r.full() + "' is not valid");
  while (!todo.empty()) {
    store_path p = todo.back();
    todo.pop_back();
    if (edges.count(p))
      continue;
    auto next = referrers ? db.query_referrers(p) : db.query_references(p);
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

std::string reference_graph_text(store_db& db, const store_path_set& paths) {
  auto closure = compute_closure(db, paths);
  std::string out;
  for (auto& p : store_path_set(closure.begin(), closure.end())) {
    auto info = db.query_path_info(p);
    out += p.full() + "\n" + (info->deriver ? info->deriver->full() : "") + "\n";
    out += std::to_string(info->references.size()) + "\n";
    for (auto& r : info->references)
      out += r.full() + "\n";
  }
  return out;
}

} // namespace kiln
