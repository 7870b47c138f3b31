// What the `kiln store` commands share: the --store option and opening it.
#pragma once

#include "store/daemon/client_store.hpp"
#include "store/local/local_store.hpp"
#include "store/local/missing.hpp"
#include "store/format/settings.hpp"
#include "tools/kiln/cli.hpp"

#include <memory>

namespace kiln::cmd {

// --store: local, local:DIR, /DIR, local?root=DIR, daemon or unix:///PATH;
// by default the daemon for a user who is not root when its socket exists,
// else the local store (/ for root, ~/.local/share/kiln/root otherwise).
inline const cli::option_spec store_option{"--store", true};
// For commands that work on a local store only (refuses the daemon).
std::unique_ptr<local_store> open_store(const cli::parsed_args& a);
// For commands that work on any store; `log` hears what a daemon says
// (default: its messages on stderr).
std::unique_ptr<kiln::store> open_any_store(const cli::parsed_args& a, daemon::client_store::log_sink log = {});
// The store `uri` names (any form --store takes, and file:///DIR binary
// caches), with `a`'s settings for a daemon. `must_exist`: a local store or
// cache that is not there is an error, not made.
std::unique_ptr<kiln::store> open_store_at(const std::string& uri, const cli::parsed_args& a, bool must_exist,
                                           daemon::client_store::log_sink log = {});

// Settings from $KILN_CONF (default /etc/kiln/kiln.conf, if present), then
// each --option NAME VALUE in order.
settings load_settings(const cli::parsed_args& a);

// A path as /nix/store/... (or, in a local store, its real location);
// valid_path(s) also throw unless it is valid.
store_path parse_any_path(kiln::store& store, const std::string& text);
store_path valid_path(kiln::store& store, const std::string& text);
store_path_set valid_paths(kiln::store& store, const std::vector<std::string>& texts);

// DRV (all outputs), DRV^OUT1,OUT2, DRV^* or a plain store path.
wanted_path parse_wanted(kiln::store& store, const std::string& text);

// Store paths mentioned in `text` (as /nix/store/<hash>-...) that are valid.
store_path_set valid_paths_mentioned(kiln::store& store, std::string_view text);

} // namespace kiln::cmd
