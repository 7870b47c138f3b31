// A thin RAII layer over SQLite: a connection, prepared statements and
// transactions. Every error names the statement's purpose and SQLite's own
// message; SQLITE_BUSY is waited out by the busy timeout, not retried here.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace kiln {

class sqlite_db {
public:
  // Opens (creating if asked) the database file; throws error on failure.
  sqlite_db(const std::string& path, bool create);
  ~sqlite_db();
  sqlite_db(const sqlite_db&) = delete;
  sqlite_db& operator=(const sqlite_db&) = delete;

  // Runs one or more statements without results.
  void exec(const std::string& sql, std::string_view purpose);
  int64_t last_insert_rowid() const;
  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

private:
  friend class sqlite_stmt;
  // Statements are prepared once per connection and reused: a store
  // answering many small queries (a big build graph) spent more time
  // compiling SQL than running it. An idle statement waits here; one in
  // use is taken out, so nested uses of the same SQL each get their own.
  sqlite3_stmt* take_statement(const std::string& sql, std::string_view purpose);
  void return_statement(const std::string& sql, sqlite3_stmt* stmt);

  sqlite3* db_ = nullptr;
  std::string path_;
  std::multimap<std::string, sqlite3_stmt*> idle_;
};

class sqlite_stmt {
public:
  sqlite_stmt(sqlite_db& db, const std::string& sql, std::string purpose);
  ~sqlite_stmt();
  sqlite_stmt(const sqlite_stmt&) = delete;
  sqlite_stmt& operator=(const sqlite_stmt&) = delete;

  // Binding is positional and chainable; reset() clears it for reuse.
  sqlite_stmt& bind(std::string_view text);
  sqlite_stmt& bind(int64_t value);
  sqlite_stmt& bind_null();
  sqlite_stmt& bind(const std::string& text) { return bind(std::string_view(text)); }
  sqlite_stmt& bind(const char* text) { return bind(std::string_view(text)); }
  sqlite_stmt& bind(const std::optional<std::string>& text);

  // Steps once; true while a row is available.
  bool step();
  // Steps to completion, for statements without results.
  void run();
  void reset();

  std::string text(int column) const;
  std::optional<std::string> optional_text(int column) const;
  int64_t integer(int column) const;
  bool is_null(int column) const;

private:
  sqlite_db& db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::string sql_;
  std::string purpose_;
  int next_ = 1;
};

// BEGIN IMMEDIATE on construction (takes the write lock at once, so two
// writers never deadlock upgrading); rolls back unless commit() was called.
class sqlite_txn {
public:
  explicit sqlite_txn(sqlite_db& db);
  ~sqlite_txn();
  void commit();

private:
  sqlite_db& db_;
  bool done_ = false;
};

// One consistent snapshot for a run of queries: a read transaction (plain
// "begin", deferred), ended when the value goes. Each statement outside a
// transaction takes and drops WAL read locks of its own, which dominated
// planning a large graph; inside one, they are taken once.
class sqlite_read_txn {
public:
  explicit sqlite_read_txn(sqlite_db& db);
  ~sqlite_read_txn();
  sqlite_read_txn(const sqlite_read_txn&) = delete;
  sqlite_read_txn& operator=(const sqlite_read_txn&) = delete;

private:
  sqlite_db& db_;
};

} // namespace kiln
