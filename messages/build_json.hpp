// A build result as JSON: what `kiln build --json` prints, and how kilnd
// keeps a detached request's results in its queue until they are fetched.
#pragma once

#include "messages/build_types.hpp"

#include <nlohmann/json.hpp>

namespace kiln {

nlohmann::ordered_json build_result_json(const build_result& r);
// Back from build_result_json's form; throws format_error naming the field.
build_result build_result_from_json(const nlohmann::json& j);

} // namespace kiln
