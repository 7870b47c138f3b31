#include "store/store.hpp"

namespace kiln {

store_path_set store::query_valid_paths(const store_path_set& paths) {
  store_path_set valid;
  for (auto& p : paths)
    if (is_valid(p))
      valid.insert(p);
  return valid;
}

} // namespace kiln
