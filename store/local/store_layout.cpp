#include "store/local/store_layout.hpp"

#include "store/io/error.hpp"

#include <cstdlib>
#include <unistd.h>

namespace kiln {

store_layout store_layout::default_for_user() {
  if (::geteuid() == 0)
    return store_layout{""};
  const char* home = std::getenv("HOME");
  if (!home || !*home)
    throw error("cannot choose a default store: HOME is not set (use --store local:DIR)");
  return store_layout{std::string(home) + "/.local/share/kiln/root"};
}

store_layout store_layout::from_uri(std::string_view uri) {
  if (uri == "local" || uri == "auto")
    return default_for_user();
  // Nix's spellings of a chroot store: "/DIR" and "local?root=DIR".
  std::string dir;
  if (uri.rfind("local:", 0) == 0)
    dir = uri.substr(6);
  else if (uri.rfind("local?root=", 0) == 0)
    dir = uri.substr(11);
  else if (!uri.empty() && uri[0] == '/')
    dir = uri;
  else
    throw format_error("unsupported store '" + std::string(uri) +
                       "' (expected 'local', 'local:DIR', 'local?root=DIR' or '/DIR')");
  if (dir.empty() || dir[0] != '/') {
    char* cwd = ::getcwd(nullptr, 0);
    if (!cwd)
      throw_errno("getting the current directory");
    dir = std::string(cwd) + "/" + dir;
    std::free(cwd);
  }
  while (dir.size() > 1 && dir.back() == '/')
    dir.pop_back();
  return store_layout{dir == "/" ? "" : dir};
}

} // namespace kiln
