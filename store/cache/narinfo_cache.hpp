// What binary caches said about paths, kept between runs in SQLite (Nix's
// narinfo-cache-positive-ttl and narinfo-cache-negative-ttl): a narinfo a
// cache served, or its saying it has none, is believed for that long
// instead of being asked again. One file per user
// ($XDG_CACHE_HOME/kiln/narinfo-v1.sqlite, else ~/.cache/kiln/...), shared
// by the caches of one process and by concurrent processes (WAL).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace kiln {

class sqlite_db;

class narinfo_cache {
public:
  // The cache in `file` (made if missing); nullptr if it cannot be opened
  // (no home, a read-only one): lookups then simply go to the caches.
  static std::shared_ptr<narinfo_cache> open(const std::string& file);
  // The default file for this user, "" if there is none.
  static std::string default_file();
  ~narinfo_cache();

  enum class known { no, absent, present };
  struct answer {
    known what = known::no;
    std::string text; // the narinfo, when present
  };
  // What `cache` said about `hash_part`, if it said it recently enough:
  // within `positive_ttl` seconds for a narinfo, `negative_ttl` for none.
  answer lookup(const std::string& cache, std::string_view hash_part, uint64_t positive_ttl, uint64_t negative_ttl);
  // Records a narinfo's text, or (nullopt) that the cache has none.
  void record(const std::string& cache, std::string_view hash_part, const std::optional<std::string>& text);

private:
  explicit narinfo_cache(std::unique_ptr<sqlite_db> db);
  std::mutex mutex_;
  std::unique_ptr<sqlite_db> db_;
};

} // namespace kiln
