// What the store knows about a valid path (nix-formats.md §10).
#pragma once

#include "store/format/hash.hpp"
#include "store/format/store_path.hpp"

#include <cstdint>
#include <optional>
#include <set>
#include <string>

namespace kiln {

struct path_info {
  store_path path;
  std::optional<store_path> deriver;
  hash nar_hash;                 // SHA-256 of the NAR
  uint64_t nar_size = 0;
  store_path_set references;     // may include `path` itself
  int64_t registration_time = 0; // unix seconds; 0 = "now" when registering
  bool ultimate = false;         // built here, not substituted
  std::set<std::string> sigs;    // "keyname:base64"
  std::optional<std::string> ca; // content address (fixed:..., text:...)

  explicit path_info(store_path p) : path(std::move(p)) {}
};

} // namespace kiln
