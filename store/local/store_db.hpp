// The store database: Nix 2.8's SQLite schema (version 10) and the queries
// on it. Nix's tools can read a database Kiln wrote and vice versa, so the
// tables, columns, indexes and trigger are exactly Nix's; Kiln's own state
// never goes in here. Paths are stored in full, as Nix stores them.
#pragma once

#include "store/format/path_info.hpp"
#include "store/local/sqlite.hpp"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kiln {

inline constexpr int nix_schema_version = 10;

// .drv path -> output name -> output path.
using derivation_outputs_map = std::map<store_path, std::map<std::string, store_path>>;

class store_db {
public:
  // Opens `db_dir`/db.sqlite, creating the schema (and the `schema` file)
  // when the database is new. Refuses a schema version it does not know.
  store_db(const std::string& db_dir, std::string store_dir = std::string(default_store_dir));

  bool is_valid(const store_path& p);
  std::optional<path_info> query_path_info(const store_path& p);
  store_path_set query_references(const store_path& p);
  store_path_set query_referrers(const store_path& p);
  // Valid .drv paths that list `p` as an output.
  store_path_set query_valid_derivers(const store_path& p);
  // output name -> path, for a valid .drv.
  std::map<std::string, store_path> query_derivation_outputs(const store_path& drv);
  std::vector<store_path> query_all_valid_paths();
  // The valid path whose hash part is `hash_part`, if any.
  std::optional<store_path> query_path_from_hash_part(std::string_view hash_part);

  // Registers paths in one transaction. Every reference must be valid
  // already or be in `infos` (the closure invariant); otherwise nothing is
  // registered. Re-registering a valid path updates its metadata. The
  // outputs of .drv paths among them are recorded in the same transaction.
  void register_valid_paths(const std::vector<path_info>& infos,
                            const derivation_outputs_map& drv_outputs = {});
  // Records a .drv's outputs (done when a valid .drv is registered).
  void add_derivation_outputs(const store_path& drv, const std::map<std::string, store_path>& outputs);
  // Removes a path that nothing valid refers to (but itself).
  void invalidate_path(const store_path& p);

  sqlite_db& db() { return *db_; }

private:
  std::optional<int64_t> path_id(const store_path& p);
  store_path_set query_ref_set(const std::string& sql, const store_path& p, const char* purpose);
  std::string full(const store_path& p) const { return p.full(store_dir_); }
  store_path parse(const std::string& full_path) const;

  std::string store_dir_;
  std::unique_ptr<sqlite_db> db_;
};

} // namespace kiln
