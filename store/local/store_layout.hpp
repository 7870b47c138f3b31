// Where a local store keeps things: Nix's layout under a root directory.
// `local:DIR` puts contents in DIR/nix/store while store paths still read
// /nix/store/..., exactly as Nix's chroot stores do.
#pragma once

#include <string>
#include <string_view>

namespace kiln {

struct store_layout {
  std::string root; // "" for the system's own store at /

  std::string store_dir() const { return root + "/nix/store"; } // real directory
  std::string state_dir() const { return root + "/nix/var/nix"; }
  std::string db_dir() const { return state_dir() + "/db"; }
  std::string gcroots_dir() const { return state_dir() + "/gcroots"; }
  std::string temproots_dir() const { return state_dir() + "/temproots"; }
  std::string profiles_dir() const { return state_dir() + "/profiles"; }
  std::string log_dir() const { return root + "/nix/var/log/nix/drvs"; }
  // Kiln's own state, never inside Nix's tables.
  std::string kiln_dir() const { return root + "/nix/var/kiln"; }
  // Adds in progress (see local_store): cleaned when the store is opened.
  std::string pending_dir() const { return kiln_dir() + "/pending"; }

  // "local" (the default for this user: / for root, ~/.local/share/kiln/root
  // otherwise), or a root directory as "local:DIR", "local?root=DIR" or
  // "/DIR". Throws format_error otherwise.
  static store_layout from_uri(std::string_view uri);
  static store_layout default_for_user();
};

} // namespace kiln
