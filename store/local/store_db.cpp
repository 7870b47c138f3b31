#include "store/local/store_db.hpp"

#include "store/io/error.hpp"
#include "store/io/fd.hpp"
#include "store/io/file_ops.hpp"

#include <ctime>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln {
namespace {

// Nix 2.8's schema, version 10 (nix-formats.md §16), in our own words.
const char* schema_sql = R"(
create table if not exists ValidPaths (
    id               integer primary key autoincrement not null,
    path             text unique not null,
    hash             text not null,      -- "sha256:<base16>" of the NAR
    registrationTime integer not null,   -- unix seconds
    deriver          text,               -- full .drv path, or null
    narSize          integer,
    ultimate         integer,            -- 1 if built here; null means false
    sigs             text,               -- space-separated "key:base64"
    ca               text                -- content address, or null
);
create table if not exists Refs (
    referrer  integer not null,
    reference integer not null,
    primary key (referrer, reference),
    foreign key (referrer) references ValidPaths(id) on delete cascade,
    foreign key (reference) references ValidPaths(id) on delete restrict
);
create index if not exists IndexReferrer on Refs(referrer);
create index if not exists IndexReference on Refs(reference);
-- A path's reference to itself must not block deleting it.
create trigger if not exists DeleteSelfRefs before delete on ValidPaths
  begin
    delete from Refs where referrer = old.id and reference = old.id;
  end;
create table if not exists DerivationOutputs (
    drv  integer not null,
    id   text not null,                  -- output name, e.g. "out"
    path text not null,
    primary key (drv, id),
    foreign key (drv) references ValidPaths(id) on delete cascade
);
create index if not exists IndexDerivationOutputs on DerivationOutputs(path);
)";

std::optional<int> read_schema_version(const std::string& file) {
  if (!path_exists(file))
    return std::nullopt;
  unique_fd fd = open_read_only(file);
  char buf[32];
  std::size_t n = read_some(fd.get(), buf, sizeof buf - 1, "'" + file + "'");
  std::string text(buf, n);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
    throw error("store schema file '" + file + "' does not hold a version number");
  return std::stoi(text);
}

void write_schema_file(const std::string& file) {
  std::string tmp = file + ".tmp";
  unique_fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd)
    throw_errno("creating '" + tmp + "'");
  std::string v = std::to_string(nix_schema_version);
  write_all(fd.get(), v.data(), v.size(), "'" + tmp + "'");
  if (::fsync(fd.get()) != 0)
    throw_errno("syncing '" + tmp + "'");
  if (::rename(tmp.c_str(), file.c_str()) != 0)
    throw_errno("renaming '" + tmp + "' to '" + file + "'");
}

std::string join_sigs(const std::set<std::string>& sigs) {
  std::string s;
  for (auto& sig : sigs)
    s += (s.empty() ? "" : " ") + sig;
  return s;
}

} // namespace

store_db::store_db(const std::string& db_dir, std::string store_dir) : store_dir_(std::move(store_dir)) {
  std::string schema_file = db_dir + "/schema", db_file = db_dir + "/db.sqlite";
  auto version = read_schema_version(schema_file);
  // No schema file means a new store, or one whose creation was interrupted
  // (as Nix 2.8 treats it): the schema statements are idempotent.
  bool fresh = !version;
  if (version && *version != nix_schema_version)
    throw error("the store database in '" + db_dir + "' has schema version " +
                std::to_string(*version) + "; Kiln knows only version " +
                std::to_string(nix_schema_version) + " (Nix 2.8) and will not touch it");
  db_ = std::make_unique<sqlite_db>(db_file, true);
  db_->exec("pragma foreign_keys = on", "enabling foreign keys");
  db_->exec("pragma journal_mode = wal", "switching to WAL mode");
  db_->exec("pragma synchronous = normal", "setting the sync mode");
  // More pages stay cached than SQLite's default 2 MB: looking up 100,000
  // paths was mostly page reads.
  db_->exec("pragma cache_size = -16384", "sizing the page cache");
  if (fresh) {
    sqlite_txn txn(*db_);
    db_->exec(schema_sql, "creating the store schema");
    txn.commit();
    write_schema_file(schema_file);
  }
}

store_path store_db::parse(const std::string& full_path) const {
  return parse_store_path(full_path, store_dir_);
}

std::optional<int64_t> store_db::path_id(const store_path& p) {
  sqlite_stmt q(*db_, "select id from ValidPaths where path = ?", "looking up a path");
  q.bind(full(p));
  if (!q.step())
    return std::nullopt;
  return q.integer(0);
}

bool store_db::is_valid(const store_path& p) {
  return path_id(p).has_value();
}

std::optional<path_info> store_db::query_path_info(const store_path& p) {
  sqlite_stmt q(*db_,
                "select id, hash, registrationTime, deriver, narSize, ultimate, sigs, ca "
                "from ValidPaths where path = ?",
                "querying path info");
  q.bind(full(p));
  if (!q.step())
    return std::nullopt;
  path_info info(p);
  try {
    info.nar_hash = parse_hash(q.text(1));
  } catch (const format_error& e) {
    throw error("the store database has a malformed hash for '" + full(p) + "': " + e.what());
  }
  info.registration_time = q.integer(2);
  if (auto d = q.optional_text(3); d && !d->empty())
    info.deriver = parse(*d);
  info.nar_size = static_cast<uint64_t>(q.integer(4));
  info.ultimate = !q.is_null(5) && q.integer(5) != 0;
  std::string sigs = q.text(6);
  for (std::size_t pos = 0; pos < sigs.size();) {
    auto sp = sigs.find(' ', pos);
    auto sig = sigs.substr(pos, sp == std::string::npos ? std::string::npos : sp - pos);
    if (!sig.empty())
      info.sigs.insert(sig);
    pos = sp == std::string::npos ? sigs.size() : sp + 1;
  }
  info.ca = q.optional_text(7);
  info.references = query_references(p);
  return info;
}

store_path_set store_db::query_ref_set(const std::string& sql, const store_path& p,
                                       const char* purpose) {
  sqlite_stmt q(*db_, sql, purpose);
  q.bind(full(p));
  store_path_set out;
  while (q.step())
    out.insert(parse(q.text(0)));
  return out;
}

store_path_set store_db::query_references(const store_path& p) {
  return query_ref_set("select v.path from Refs r join ValidPaths v on r.reference = v.id "
                       "where r.referrer = (select id from ValidPaths where path = ?)",
                       p, "querying references");
}

store_path_set store_db::query_referrers(const store_path& p) {
  return query_ref_set("select v.path from Refs r join ValidPaths v on r.referrer = v.id "
                       "where r.reference = (select id from ValidPaths where path = ?)",
                       p, "querying referrers");
}

store_path_set store_db::query_valid_derivers(const store_path& p) {
  return query_ref_set("select v.path from DerivationOutputs d join ValidPaths v on d.drv = v.id "
                       "where d.path = ?",
                       p, "querying derivers");
}

std::map<std::string, store_path> store_db::query_derivation_outputs(const store_path& drv) {
  sqlite_stmt q(*db_,
                "select d.id, d.path from DerivationOutputs d join ValidPaths v on d.drv = v.id "
                "where v.path = ?",
                "querying derivation outputs");
  q.bind(full(drv));
  std::map<std::string, store_path> out;
  while (q.step())
    out.emplace(q.text(0), parse(q.text(1)));
  return out;
}

std::vector<store_path> store_db::query_all_valid_paths() {
  sqlite_stmt q(*db_, "select path from ValidPaths order by path", "listing valid paths");
  std::vector<store_path> out;
  while (q.step())
    out.push_back(parse(q.text(0)));
  return out;
}

std::optional<store_path> store_db::query_path_from_hash_part(std::string_view hash_part) {
  // Paths sort by hash part first, so this is an index range scan.
  std::string prefix = store_dir_ + "/" + std::string(hash_part);
  sqlite_stmt q(*db_, "select path from ValidPaths where path >= ? limit 1",
                "looking up a hash part");
  q.bind(prefix);
  if (!q.step())
    return std::nullopt;
  std::string found = q.text(0);
  if (found.compare(0, prefix.size(), prefix) != 0)
    return std::nullopt;
  return parse(found);
}

void store_db::register_valid_paths(const std::vector<path_info>& infos,
                                    const derivation_outputs_map& drv_outputs) {
  sqlite_txn txn(*db_);
  store_path_set batch;
  for (auto& i : infos)
    batch.insert(i.path);
  for (auto& i : infos)
    for (auto& r : i.references)
      if (!batch.count(r) && !is_valid(r))
        throw error("cannot register '" + full(i.path) + "': its reference '" + full(r) +
                    "' is not valid (a path is never valid before its references)");

  sqlite_stmt insert(*db_,
                     "insert into ValidPaths (path, hash, registrationTime, deriver, narSize, "
                     "ultimate, sigs, ca) values (?, ?, ?, ?, ?, ?, ?, ?)",
                     "registering a path");
  sqlite_stmt update(*db_,
                     "update ValidPaths set narSize = ?, hash = ?, ultimate = ?, sigs = ?, ca = ? "
                     "where path = ?",
                     "updating a path's info");
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  std::map<store_path, int64_t> ids;
  for (auto& i : infos) {
    std::string hash_text = i.nar_hash.to_prefixed(hash_format::base16);
    std::optional<std::string> sigs;
    if (!i.sigs.empty())
      sigs = join_sigs(i.sigs);
    if (auto id = path_id(i.path)) {
      update.bind(static_cast<int64_t>(i.nar_size)).bind(hash_text);
      i.ultimate ? update.bind(int64_t{1}) : update.bind_null();
      update.bind(sigs).bind(i.ca).bind(full(i.path));
      update.run();
      ids[i.path] = *id;
      continue;
    }
    insert.bind(full(i.path)).bind(hash_text).bind(i.registration_time ? i.registration_time : now);
    insert.bind(i.deriver ? std::optional<std::string>(full(*i.deriver)) : std::nullopt);
    insert.bind(static_cast<int64_t>(i.nar_size));
    i.ultimate ? insert.bind(int64_t{1}) : insert.bind_null();
    insert.bind(sigs).bind(i.ca);
    insert.run();
    ids[i.path] = db_->last_insert_rowid();
  }
  sqlite_stmt ref(*db_, "insert or ignore into Refs (referrer, reference) values (?, ?)",
                  "registering a reference");
  for (auto& i : infos)
    for (auto& r : i.references) {
      auto it = ids.find(r);
      int64_t target = it != ids.end() ? it->second : *path_id(r);
      ref.bind(ids.at(i.path)).bind(target);
      ref.run();
    }
  for (auto& [drv, outputs] : drv_outputs)
    add_derivation_outputs(drv, outputs);
  txn.commit();
}

void store_db::add_derivation_outputs(const store_path& drv,
                                      const std::map<std::string, store_path>& outputs) {
  auto id = path_id(drv);
  if (!id)
    throw error("cannot record outputs of '" + full(drv) + "': it is not valid");
  sqlite_stmt q(*db_, "insert or replace into DerivationOutputs (drv, id, path) values (?, ?, ?)",
                "recording a derivation output");
  for (auto& [name, p] : outputs) {
    q.bind(*id).bind(name).bind(full(p));
    q.run();
  }
}

void store_db::invalidate_path(const store_path& p) {
  sqlite_txn txn(*db_);
  auto referrers = query_referrers(p);
  referrers.erase(p);
  if (!referrers.empty())
    throw error("cannot invalidate '" + full(p) + "': '" + full(*referrers.begin()) +
                "' still refers to it");
  sqlite_stmt q(*db_, "delete from ValidPaths where path = ?", "invalidating a path");
  q.bind(full(p));
  q.run();
  txn.commit();
}

} // namespace kiln
