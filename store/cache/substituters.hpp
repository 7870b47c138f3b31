// The substituter a `substituters` entry names.
#pragma once

#include "store/local/substituter.hpp"

#include <memory>
#include <string>

namespace kiln {

// local:DIR (another local store) or file:///DIR (a binary cache in a
// directory), each with ?trusted=1 to skip signature checks. Anything
// else is a format_error saying what is supported.
std::unique_ptr<substituter> make_substituter(const std::string& uri);

} // namespace kiln
