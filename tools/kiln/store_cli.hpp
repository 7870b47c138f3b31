// What the `kiln store` commands share: the --store option and opening it.
#pragma once

#include "store/local/local_store.hpp"
#include "store/local/missing.hpp"
#include "store/format/settings.hpp"
#include "tools/kiln/cli.hpp"

#include <memory>

namespace kiln::cmd {

// --store local:DIR (default: the user's store, as Nix chooses it).
inline const cli::option_spec store_option{"--store", true};

std::unique_ptr<local_store> open_store(const cli::parsed_args& a);

// Settings from $KILN_CONF (default /etc/kiln/kiln.conf, if present), then
// each --option NAME VALUE in order.
settings load_settings(const cli::parsed_args& a);

// Parses PATH (/nix/store/... or its real location); throws unless valid.
store_path valid_path(local_store& store, const std::string& text);
store_path_set valid_paths(local_store& store, const std::vector<std::string>& texts);

// DRV (all outputs), DRV^OUT1,OUT2, DRV^* or a plain store path.
wanted_path parse_wanted(local_store& store, const std::string& text);

// Store paths mentioned in `text` (as /nix/store/<hash>-...) that are valid.
store_path_set valid_paths_mentioned(local_store& store, std::string_view text);

} // namespace kiln::cmd
