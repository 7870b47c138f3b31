// The JSON form of a derivation that `nix show-derivation` prints:
// { "<drv path>": { outputs, inputSrcs, inputDrvs, system, builder, args, env } }.
#pragma once

#include "store/derivation.hpp"

#include <string>

namespace kiln {

// Pretty-printed with two-space indents. Bytes that are not valid UTF-8 are
// replaced with U+FFFD, since JSON cannot carry them.
std::string derivation_to_json(const derivation& drv, const std::string& drv_path);

} // namespace kiln
