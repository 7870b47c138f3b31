// Filling an ordered_json object whose keys are known to be new (they come
// sorted and unique from a std::map or a NAR): an ordered_json object finds
// a key by linear search, so filling one key by key with operator[] was
// quadratic (80,000 entries of one directory: 10 s for `nar ls --json`).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace kiln {

// Appends key/value to `object` (an ordered_json object) without a lookup.
inline void append_new_key(nlohmann::ordered_json& object, std::string key, nlohmann::ordered_json value) {
  // ordered_json's object type is a vector of pairs underneath.
  using entries = std::vector<std::pair<const std::string, nlohmann::ordered_json>>;
  static_cast<entries&>(object.get_ref<nlohmann::ordered_json::object_t&>()).emplace_back(std::move(key),
                                                                                       std::move(value));
}

} // namespace kiln
