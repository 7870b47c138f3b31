// What a build run is given, read from settings (kiln.conf, nix.conf,
// --option, a daemon client's overrides). No CAF here.
#pragma once

#include "messages/build_types.hpp"
#include "store/format/settings.hpp"

namespace kiln {

// Every build option that has a setting; the build mode and -L are the
// caller's.
build_options build_options_from(const settings& s);

} // namespace kiln
