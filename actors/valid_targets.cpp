#include "actors/valid_targets.hpp"

#include "store/local/sqlite.hpp"

#include <map>
#include <optional>
#include <set>

namespace kiln {

namespace {

using output_paths = std::map<std::string, store_path>;

// The derivation's recorded outputs, if it is valid and has every wanted
// output (empty = all) with a known path; nothing if the store cannot tell.
std::optional<output_paths> recorded_outputs(store_db& db, const store_path& drv,
                                             const std::set<std::string>& wanted) {
  output_paths outputs = db.query_derivation_outputs(drv); // empty unless the .drv is valid
  if (outputs.empty())
    return std::nullopt;
  for (auto& name : wanted)
    if (!outputs.count(name))
      return std::nullopt;
  return outputs;
}

bool all_valid(store_db& db, const store_path& drv, const output_paths& outputs,
               const std::set<std::string>& wanted) {
  if (!db.is_valid(drv))
    return false;
  for (auto& [name, path] : outputs)
    if ((wanted.empty() || wanted.count(name)) && !db.is_valid(path))
      return false;
  return true;
}

// A few thousand at a time keeps what is held besides the results small.
constexpr std::size_t chunk_size = 4096;

} // namespace

settled_targets settle_valid_targets(local_store& store, const std::vector<goal_request>& requests) {
  settled_targets s;
  std::set<std::string> settled;
  for (std::size_t begin = 0; begin < requests.size(); begin += chunk_size) {
    std::size_t end = std::min(requests.size(), begin + chunk_size);
    // Outputs merged per derivation, as the scheduler merges them.
    std::map<store_path, std::set<std::string>> wanted;
    for (std::size_t i = begin; i < end; ++i) {
      auto& r = requests[i];
      if (settled.count(r.drv_path))
        continue;
      std::optional<store_path> drv;
      try {
        drv = parse_store_path(r.drv_path);
      } catch (const std::exception&) {
        continue; // its goal says what is wrong with it
      }
      auto [it, fresh] = wanted.emplace(*drv, r.outputs);
      if (!fresh)
        merge_outputs(it->second, r.outputs);
    }
    // Rooted first, then looked at: what is valid after the roots are in
    // stays valid.
    struct candidate {
      const store_path* drv;
      const std::set<std::string>* names;
      output_paths outputs;
    };
    std::vector<candidate> candidates;
    std::vector<store_path> roots;
    {
      sqlite_read_txn snapshot(store.db().db());
      for (auto& [drv, names] : wanted)
        if (auto outputs = recorded_outputs(store.db(), drv, names)) {
          roots.push_back(drv);
          for (auto& [name, path] : *outputs)
            roots.push_back(path);
          candidates.push_back({&drv, &names, std::move(*outputs)});
        }
    }
    store.add_temp_roots(roots);
    sqlite_read_txn snapshot(store.db().db());
    for (auto& c : candidates)
      if (all_valid(store.db(), *c.drv, c.outputs, *c.names)) {
        const store_path& drv = *c.drv;
        const output_paths& outputs = c.outputs;
        build_result r;
        r.path = drv.full();
        r.status = build_status::already_valid;
        r.top_level = true;
        for (auto& [name, path] : outputs)
          r.outputs.emplace(name, path.full());
        settled.insert(r.path);
        s.already_valid.push_back(std::move(r));
      }
  }
  for (auto& r : requests)
    if (!settled.count(r.drv_path))
      s.remaining.push_back(r);
  return s;
}

} // namespace kiln
