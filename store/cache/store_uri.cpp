#include "store/cache/store_uri.hpp"

#include "store/io/error.hpp"
#include "store/io/file_ops.hpp"
#include "store/local/local_store.hpp"

#include <set>

namespace kiln {

store_uri parse_store_uri(const std::string& text) {
  store_uri u;
  u.text = text;
  auto q = text.find('?');
  u.base = text.substr(0, q);
  if (q == std::string::npos)
    return u;
  std::string rest = text.substr(q + 1);
  std::size_t at = 0;
  while (at <= rest.size()) {
    std::size_t end = rest.find('&', at);
    if (end == std::string::npos)
      end = rest.size();
    std::string item = rest.substr(at, end - at);
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw format_error("store '" + text + "': parameter '" + item + "' is not NAME=VALUE");
    if (!u.params.emplace(item.substr(0, eq), item.substr(eq + 1)).second)
      throw format_error("store '" + text + "': parameter '" + item.substr(0, eq) + "' is given twice");
    at = end + 1;
  }
  return u;
}

bool is_binary_cache_uri(const std::string& text) {
  return text.rfind("file://", 0) == 0 || text.rfind("http://", 0) == 0 || text.rfind("https://", 0) == 0;
}

cache_client_settings cache_client_settings_from(const settings& s) {
  cache_client_settings c;
  c.http.attempts = static_cast<unsigned>(s.get_number("download-attempts"));
  c.http.stalled_timeout = static_cast<unsigned>(s.get_number("stalled-download-timeout"));
  c.http.connect_timeout = static_cast<unsigned>(s.get_number("connect-timeout"));
  c.http.netrc_file = s.get("netrc-file");
  c.http.ca_file = s.get("ssl-cert-file");
  c.positive_ttl = s.get_number("narinfo-cache-positive-ttl");
  c.negative_ttl = s.get_number("narinfo-cache-negative-ttl");
  c.lookup_cache = narinfo_cache::default_file();
  return c;
}

namespace {

void allow_only(const store_uri& u, const std::set<std::string>& known) {
  for (auto& [name, value] : u.params)
    if (!known.count(name)) {
      std::string list;
      for (auto& k : known)
        list += (list.empty() ? "" : ", ") + k;
      throw format_error("store '" + u.text + "': unknown parameter '" + name + "' (it takes " + list + ")");
    }
}

int level_param(const store_uri& u) {
  auto it = u.params.find("compression-level");
  if (it == u.params.end())
    return -1;
  try {
    std::size_t used = 0;
    int level = std::stoi(it->second, &used);
    if (used == it->second.size() && level >= 0)
      return level;
  } catch (const std::exception&) {
  }
  throw format_error("store '" + u.text + "': compression-level '" + it->second + "' is not a number from 0");
}

std::unique_ptr<cache_transport> transport_for(const store_uri& u, bool for_writing, const http_settings& http) {
  if (u.base.rfind("file://", 0) == 0) {
    std::string dir = u.base.substr(7);
    if (dir.empty() || dir[0] != '/')
      throw format_error("store '" + u.text + "': expected an absolute directory after 'file://'");
    if (for_writing)
      make_directories(dir);
    return make_file_transport(u.text, dir);
  }
  std::string base = u.base;
  auto host = base.find("://") + 3;
  if (host >= base.size() || base[host] == '/')
    throw format_error("store '" + u.text + "': expected a host after '" + base.substr(0, host) + "'");
  while (base.size() > host && base.back() == '/')
    base.pop_back();
  return make_http_transport(u.text, base, http);
}

std::unique_ptr<store> open_binary_cache(const store_uri& u, bool for_writing, const cache_client_settings& remote) {
  allow_only(u, {"compression", "compression-level", "secret-key", "trusted", "priority", "want-mass-query"});
  auto transport = transport_for(u, for_writing, remote.http);
  cache_params p;
  // A remote cache's answers are kept; a directory is as quick to ask again.
  if (u.base.rfind("file://", 0) != 0 && !remote.lookup_cache.empty()) {
    p.lookups = narinfo_cache::open(remote.lookup_cache);
    p.positive_ttl = remote.positive_ttl;
    p.negative_ttl = remote.negative_ttl;
    p.lookup_key = u.base;
  }
  if (auto it = u.params.find("compression"); it != u.params.end())
    p.compression = it->second;
  p.compression_level = level_param(u);
  if (auto it = u.params.find("secret-key"); it != u.params.end())
    p.secret_key_file = it->second;
  return std::make_unique<binary_cache_store>(std::move(transport), p, for_writing);
}

} // namespace

std::unique_ptr<store> open_store_uri(const std::string& text, bool for_writing,
                                      const cache_client_settings& remote) {
  store_uri u = parse_store_uri(text);
  if (is_binary_cache_uri(text))
    return open_binary_cache(u, for_writing, remote);
  // Local: `root` belongs to the layout's own spelling (local?root=DIR).
  allow_only(u, {"root", "trusted", "priority"});
  std::string local = u.base;
  if (auto it = u.params.find("root"); it != u.params.end())
    local += "?root=" + it->second;
  store_layout layout = store_layout::from_uri(local);
  // Opening creates a store's directories: only a writer may do that.
  if (!for_writing && !path_exists(layout.db_dir() + "/db.sqlite"))
    throw error("store '" + text + "' has no store database under '" + (layout.root.empty() ? "/" : layout.root) + "'");
  return std::make_unique<local_store>(layout);
}

} // namespace kiln
