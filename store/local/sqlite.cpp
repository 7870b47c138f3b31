#include "store/local/sqlite.hpp"

#include "store/io/error.hpp"

#include <sqlite3.h>

namespace kiln {
namespace {

[[noreturn]] void fail(sqlite3* db, std::string_view purpose, const std::string& where) {
  throw error("SQLite error while " + std::string(purpose) + " (" + where +
              "): " + (db ? sqlite3_errmsg(db) : "out of memory"));
}

} // namespace

sqlite_db::sqlite_db(const std::string& path, bool create) : path_(path) {
  // SQLite counts its memory under one process-wide mutex by default: with
  // a connection per kilnd session, every query of every session would
  // take it. Nothing here reads those counts. (Only possible before the
  // library initialises, which the first open does.)
  static const bool counting_off = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
  (void)counting_off;
  int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw error("cannot open the store database '" + path + "': " + msg);
  }
  // Other processes (kiln or Nix) hold the write lock only briefly.
  sqlite3_busy_timeout(db_, 60 * 60 * 1000);
}

sqlite_db::~sqlite_db() {
  for (auto& [sql, stmt] : idle_)
    sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

sqlite3_stmt* sqlite_db::take_statement(const std::string& sql, std::string_view purpose) {
  if (auto it = idle_.find(sql); it != idle_.end()) {
    sqlite3_stmt* stmt = it->second;
    idle_.erase(it);
    return stmt;
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK)
    fail(db_, "preparing to " + std::string(purpose), path_);
  return stmt;
}

void sqlite_db::return_statement(const std::string& sql, sqlite3_stmt* stmt) {
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  idle_.emplace(sql, stmt);
}

void sqlite_db::exec(const std::string& sql, std::string_view purpose) {
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK)
    fail(db_, purpose, path_);
}

int64_t sqlite_db::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(db_);
}

sqlite_stmt::sqlite_stmt(sqlite_db& db, const std::string& sql, std::string purpose)
  : db_(db), stmt_(db.take_statement(sql, purpose)), sql_(sql), purpose_(std::move(purpose)) {}

sqlite_stmt::~sqlite_stmt() {
  db_.return_statement(sql_, stmt_);
}

sqlite_stmt& sqlite_stmt::bind(std::string_view text) {
  if (sqlite3_bind_text(stmt_, next_++, text.data(), static_cast<int>(text.size()),
                        SQLITE_TRANSIENT) != SQLITE_OK)
    fail(db_.handle(), purpose_, db_.path());
  return *this;
}

sqlite_stmt& sqlite_stmt::bind(int64_t value) {
  if (sqlite3_bind_int64(stmt_, next_++, value) != SQLITE_OK)
    fail(db_.handle(), purpose_, db_.path());
  return *this;
}

sqlite_stmt& sqlite_stmt::bind_null() {
  if (sqlite3_bind_null(stmt_, next_++) != SQLITE_OK)
    fail(db_.handle(), purpose_, db_.path());
  return *this;
}

sqlite_stmt& sqlite_stmt::bind(const std::optional<std::string>& text) {
  return text ? bind(std::string_view(*text)) : bind_null();
}

bool sqlite_stmt::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW)
    return true;
  if (rc == SQLITE_DONE)
    return false;
  fail(db_.handle(), purpose_, db_.path());
}

void sqlite_stmt::run() {
  while (step()) {
  }
  reset();
}

void sqlite_stmt::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  next_ = 1;
}

std::string sqlite_stmt::text(int column) const {
  auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))) : "";
}

std::optional<std::string> sqlite_stmt::optional_text(int column) const {
  if (is_null(column))
    return std::nullopt;
  return text(column);
}

int64_t sqlite_stmt::integer(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

bool sqlite_stmt::is_null(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

sqlite_txn::sqlite_txn(sqlite_db& db) : db_(db) {
  db_.exec("begin immediate", "starting a transaction");
}

sqlite_txn::~sqlite_txn() {
  if (!done_)
    sqlite3_exec(db_.handle(), "rollback", nullptr, nullptr, nullptr);
}

void sqlite_txn::commit() {
  db_.exec("commit", "committing a transaction");
  done_ = true;
}

sqlite_read_txn::sqlite_read_txn(sqlite_db& db) : db_(db) {
  db_.exec("begin", "starting a read transaction");
}

sqlite_read_txn::~sqlite_read_txn() {
  sqlite3_exec(db_.handle(), "commit", nullptr, nullptr, nullptr);
}

} // namespace kiln
