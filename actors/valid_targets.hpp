// Before any actor starts: the requested derivations whose wanted outputs
// are all valid already get their AlreadyValid result straight from the
// database (the outputs the store recorded when the .drv was registered),
// instead of a goal each. Asking for a large, already built graph then
// costs a few indexed lookups per node rather than an actor, a .drv read
// and several messages. CAF-free: store work only.
#pragma once

#include "messages/build_types.hpp"
#include "store/local/local_store.hpp"

#include <vector>

namespace kiln {

struct settled_targets {
  std::vector<build_result> already_valid; // one per derivation, top-level
  std::vector<goal_request> remaining;     // for goals, in the order asked
};

// Only for normal builds (check, repair and hash modes rebuild valid
// outputs). Whatever this cannot judge (an invalid .drv, an output name the
// derivation lacks, a floating output) is left to the goals, which report
// it as the reference does. Outputs are temp-rooted and then looked at
// again, so a collector running meanwhile cannot take them between the
// look and the result.
settled_targets settle_valid_targets(local_store& store, const std::vector<goal_request>& requests);

} // namespace kiln
