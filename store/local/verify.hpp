// Checking a store against its database: every valid path exists, its
// references are valid, and (optionally) its contents hash to its narHash.
// Reports only; repair arrives with substitution and rebuilding.
#pragma once

#include "store/local/local_store.hpp"
#include "store/format/signature.hpp"

#include <string>
#include <vector>

namespace kiln {


std::vector<verify_problem> verify_paths(local_store& store, const std::vector<store_path>& paths,
                                         bool check_contents);

// Adds `key`'s signature to each path's info (kept if already there).
void sign_paths(local_store& store, const std::vector<store_path>& paths, const secret_key& key);

// The fingerprint that signatures on this path must cover.
std::string fingerprint_of(const path_info& info);

} // namespace kiln
