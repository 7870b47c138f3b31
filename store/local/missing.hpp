// The "what is missing" plan (Nix's queryMissing): for derivation outputs
// and plain paths wanted valid, which derivations would be built, which
// paths substituted, and which are unknown (neither valid, buildable here nor
// substitutable). Nothing is built or fetched; `kiln build --dry-run` and the
// scheduler's up-front summary print it.
#pragma once

#include "store/local/local_store.hpp"

#include <vector>

namespace kiln {

// Throws for a malformed .drv in the store (naming it). A derivation whose
// .drv is not valid here is unknown, as Nix reports it.
missing_plan query_missing(local_store& store, const std::vector<wanted_path>& targets,
                           const substitutable_query& substituters = {});

} // namespace kiln
