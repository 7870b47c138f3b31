#include "store/cache/substituters.hpp"

#include "store/cache/file_cache.hpp"
#include "store/io/error.hpp"
#include "store/local/local_substituter.hpp"

namespace kiln {

std::unique_ptr<substituter> make_substituter(const std::string& uri) {
  if (uri.rfind("local:", 0) == 0)
    return std::make_unique<local_substituter>(uri);
  if (uri.rfind("file://", 0) == 0)
    return std::make_unique<file_cache_substituter>(uri);
  throw format_error("substituter '" + uri + "' is not supported yet (local:DIR stores and file:///DIR caches are)");
}

} // namespace kiln
