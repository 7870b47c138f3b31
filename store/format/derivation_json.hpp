// The JSON form of a derivation that `nix show-derivation` prints:
// { "<drv path>": { outputs, inputSrcs, inputDrvs, system, builder, args, env } }.
#pragma once

#include "store/format/derivation.hpp"

#include <string>

namespace kiln {

// Pretty-printed with two-space indents. Bytes that are not valid UTF-8 are
// replaced with U+FFFD, since JSON cannot carry them.
std::string derivation_to_json(const derivation& drv, const std::string& drv_path);

// A derivation written as JSON by a user: the body `nix show-derivation`
// prints (outputs, inputSrcs, inputDrvs, system, builder, args, env) plus
// an optional "name" (else env.name), or that whole document with its one
// "<drv path>" key. Output paths may be left out ("outputs": {"out": {}});
// fixed outputs give "hashAlgo" ("[r:]sha256") and "hash" (base16). Strict:
// unknown keys and wrong types are refused, naming the field. `where` names
// the source in errors. Returns the derivation and its name.
std::pair<derivation, std::string> derivation_from_json(std::string_view text, std::string_view where);

// Fills in output paths (and the env vars named after outputs) as Nix does
// when it writes a .drv: from the fixed hash, or from the masked modulo hash.
// Paths already given must be the ones the content implies.
class derivation_hasher;
void fill_output_paths(derivation& drv, std::string_view name, derivation_hasher& hasher);

} // namespace kiln
