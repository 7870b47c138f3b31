#include "store/cache/narinfo_cache.hpp"

#include "store/io/file_ops.hpp"
#include "store/local/sqlite.hpp"

#include <cstdlib>
#include <ctime>
#include <map>

namespace kiln {

std::string narinfo_cache::default_file() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg == '/')
    return std::string(xdg) + "/kiln/narinfo-v1.sqlite";
  const char* home = std::getenv("HOME");
  if (home && *home == '/')
    return std::string(home) + "/.cache/kiln/narinfo-v1.sqlite";
  return "";
}

std::shared_ptr<narinfo_cache> narinfo_cache::open(const std::string& file) {
  // One connection per file in a process, shared by its caches.
  static std::mutex opened_mutex;
  static std::map<std::string, std::weak_ptr<narinfo_cache>> opened;
  if (file.empty())
    return nullptr;
  std::lock_guard<std::mutex> g(opened_mutex);
  if (auto it = opened.find(file); it != opened.end())
    if (auto live = it->second.lock())
      return live;
  try {
    make_directories(split_path(file).first, 0700);
    auto db = std::make_unique<sqlite_db>(file, true);
    db->exec("pragma journal_mode = wal; pragma synchronous = normal;"
             "create table if not exists narinfos (cache text not null, hash_part text not null, "
             "present integer not null, narinfo text, fetched integer not null, primary key (cache, hash_part))",
             "preparing the narinfo cache");
    std::shared_ptr<narinfo_cache> c(new narinfo_cache(std::move(db)));
    opened[file] = c;
    return c;
  } catch (const std::exception&) {
    return nullptr; // no place to keep answers: ask the caches every time
  }
}

narinfo_cache::narinfo_cache(std::unique_ptr<sqlite_db> db) : db_(std::move(db)) {}
narinfo_cache::~narinfo_cache() = default;

narinfo_cache::answer narinfo_cache::lookup(const std::string& cache, std::string_view hash_part,
                                            uint64_t positive_ttl, uint64_t negative_ttl) {
  std::lock_guard<std::mutex> g(mutex_);
  try {
    sqlite_stmt q(*db_, "select present, narinfo, fetched from narinfos where cache = ? and hash_part = ?",
                  "looking up a narinfo");
    q.bind(cache).bind(hash_part);
    if (!q.step())
      return {};
    bool present = q.integer(0) != 0;
    auto age = static_cast<uint64_t>(std::max<int64_t>(0, std::time(nullptr) - q.integer(2)));
    if (age >= (present ? positive_ttl : negative_ttl))
      return {};
    if (!present)
      return {known::absent, ""};
    return {known::present, q.text(1)};
  } catch (const std::exception&) {
    return {}; // a broken cache file costs a lookup, not the substitution
  }
}

void narinfo_cache::record(const std::string& cache, std::string_view hash_part,
                           const std::optional<std::string>& text) {
  std::lock_guard<std::mutex> g(mutex_);
  try {
    sqlite_stmt q(*db_, "insert or replace into narinfos (cache, hash_part, present, narinfo, fetched) "
                        "values (?, ?, ?, ?, ?)",
                  "recording a narinfo");
    q.bind(cache).bind(hash_part).bind(int64_t(text ? 1 : 0)).bind(text).bind(int64_t(std::time(nullptr)));
    q.run();
  } catch (const std::exception&) {
  }
}

} // namespace kiln
