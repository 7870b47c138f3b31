// Checking a store against its database: every valid path exists, its
// references are valid, and (optionally) its contents hash to its narHash
// and its .links to their names. Reports only: kilnd repairs (by
// rebuilding) what it reports.
#pragma once

#include "store/local/local_store.hpp"
#include "store/format/signature.hpp"

#include <string>
#include <vector>

namespace kiln {


std::vector<verify_problem> verify_paths(local_store& store, const std::vector<store_path>& paths,
                                         bool check_contents);

// A file of the store's .links (optimise's one copy of identical files,
// named by the base32 SHA-256 of its NAR) whose contents no longer match
// its name: every path sharing it has changed too.
struct link_problem {
  std::string link, expected, actual; // expected: its name
};
std::vector<link_problem> check_links(const local_store& store);

// Adds `key`'s signature to each path's info (kept if already there).
void sign_paths(local_store& store, const std::vector<store_path>& paths, const secret_key& key);

// The fingerprint that signatures on this path must cover.
std::string fingerprint_of(const path_info& info);

} // namespace kiln
