#include "store/local/closure.hpp"

#include "store/store.hpp"

#include "store/io/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

namespace kiln {

std::vector<store_path> compute_closure(store_db& db, const store_path_set& roots, bool referrers) {
  for (auto& r : roots)
    if (!db.is_valid(r))
      throw error("path '" + r.full() + "' is not valid");
  return closure_order(roots, [&](const store_path& p) {
    return referrers ? db.query_referrers(p) : db.query_references(p);
  }, referrers);
}

store_path_set export_references(store_db& db, const store_path_set& paths, const store_path_set& input_closure) {
  for (auto& p : paths)
    if (!input_closure.count(p))
      throw build_input_rejected("cannot export references of path '" + p.full() +
                  "' because it is not in the input closure of the derivation");
  auto closure = compute_closure(db, paths);
  store_path_set out(closure.begin(), closure.end());
  store_path_set outputs;
  for (auto& p : closure)
    if (p.is_derivation())
      for (auto& [name, o] : db.query_derivation_outputs(p))
        outputs.insert(o);
  if (!outputs.empty()) {
    auto more = compute_closure(db, outputs); // an output that is not valid is an error, as in Nix
    out.insert(more.begin(), more.end());
  }
  return out;
}

std::string reference_graph_text(store_db& db, const store_path_set& paths) {
  std::string out;
  for (auto& p : paths) {
    auto info = db.query_path_info(p);
    if (!info)
      throw error("path '" + p.full() + "' is not valid");
    out += p.full() + "\n\n" + std::to_string(info->references.size()) + "\n";
    for (auto& r : info->references)
      out += r.full() + "\n";
  }
  return out;
}

std::string reference_graph_json(store_db& db, const store_path_set& paths) {
  auto all = nlohmann::json::array();
  for (auto& p : paths) {
    auto info = db.query_path_info(p);
    if (!info)
      throw error("path '" + p.full() + "' is not valid");
    nlohmann::json j;
    j["path"] = p.full();
    j["narHash"] = info->nar_hash.to_prefixed(hash_format::base32);
    j["narSize"] = info->nar_size;
    auto refs = nlohmann::json::array();
    for (auto& r : info->references)
      refs.push_back(r.full());
    j["references"] = refs;
    if (info->ca)
      j["ca"] = *info->ca;
    uint64_t closure_size = 0;
    for (auto& c : compute_closure(db, {p}))
      closure_size += db.query_path_info(c)->nar_size;
    j["closureSize"] = closure_size;
    all.push_back(std::move(j));
  }
  return all.dump();
}

} // namespace kiln
