// Stores named by URI, as Nix names them: the local forms (`local`, `/DIR`,
// `local?root=DIR`, `local:DIR`) and binary caches (`file:///DIR`,
// `http://HOST[:PORT]/PATH`, `https://...`), each
// with `?name=value&...` parameters. The daemon's forms (`daemon`,
// `unix://`) are the client store's (store/daemon), not opened here.
#pragma once

#include "store/cache/binary_cache_store.hpp"
#include "store/format/settings.hpp"
#include "store/store.hpp"

#include <map>
#include <memory>
#include <string>

namespace kiln {

struct store_uri {
  std::string text; // as given
  std::string base; // before '?'
  std::map<std::string, std::string> params;
};

// Splits the parameters off; a parameter that is not name=value, or is
// given twice, is a format_error naming it.
store_uri parse_store_uri(const std::string& text);

bool is_binary_cache_uri(const std::string& text);

// How remote caches are reached: HTTP (download-attempts,
// stalled-download-timeout, connect-timeout, netrc-file) and how long
// their narinfo answers are believed (narinfo-cache-positive-ttl,
// narinfo-cache-negative-ttl; kept in `lookup_cache`, "" for none).
struct cache_client_settings {
  http_settings http;
  uint64_t positive_ttl = 30 * 24 * 3600;
  uint64_t negative_ttl = 3600;
  std::string lookup_cache;
};
cache_client_settings cache_client_settings_from(const settings& s);

// Opens the store `text` names. A binary cache is made (its nix-cache-info
// written) only `for_writing`. Parameters a store of that kind does not
// take are errors listing the ones it does; `trusted` (a substituter's) is
// taken by every kind and ignored here. `remote` is how http(s):// caches
// are reached.
std::unique_ptr<store> open_store_uri(const std::string& text, bool for_writing,
                                      const cache_client_settings& remote = {});

} // namespace kiln
