// The "what is missing" plan (Nix's queryMissing): for derivation outputs
// and plain paths wanted valid, which derivations would be built, which
// paths substituted, and which are unknown (neither valid, buildable here nor
// substitutable). Nothing is built or fetched; `kiln build --dry-run` and the
// scheduler's up-front summary print it.
#pragma once

#include "store/local/local_store.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kiln {

// What a substituter knows of a path it can supply.
struct substitutable_info {
  store_path_set references;
  uint64_t download_size = 0;
  uint64_t nar_size = 0;
};

// Asks the configured substituters about paths; the binary-cache issue
// provides one. Returns the subset they can supply.
using substitutable_query = std::function<std::map<store_path, substitutable_info>(const store_path_set&)>;

// A wanted target: a derivation's outputs (empty = all), or a plain path
// when `outputs` is unset.
struct wanted_path {
  store_path path;
  std::optional<std::set<std::string>> outputs; // set => `path` is a .drv

  static wanted_path opaque(store_path p) { return {std::move(p), std::nullopt}; }
  static wanted_path built(store_path drv, std::set<std::string> outs = {}) {
    return {std::move(drv), std::move(outs)};
  }
};

struct missing_plan {
  store_path_set will_build;      // .drv paths
  store_path_set will_substitute; // output or source paths
  store_path_set unknown;
  uint64_t download_size = 0;
  uint64_t nar_size = 0;
  // Derivation targets whose wanted outputs are all valid already, with
  // every output path the derivation names (output name -> path).
  std::map<store_path, std::map<std::string, store_path>> satisfied;
};

// Throws for a malformed .drv in the store (naming it). A derivation whose
// .drv is not valid here is unknown, as Nix reports it.
missing_plan query_missing(local_store& store, const std::vector<wanted_path>& targets,
                           const substitutable_query& substituters = {});

} // namespace kiln
