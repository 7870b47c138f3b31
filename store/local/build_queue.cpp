#include "store/local/build_queue.hpp"

#include "store/io/error.hpp"
#include "store/io/file_ops.hpp"

#include <nlohmann/json.hpp>

#include <ctime>

namespace kiln {

namespace {

std::string queue_path(const store_layout& layout) {
  make_directories(layout.kiln_dir(), 0755);
  return layout.kiln_dir() + "/queue.sqlite";
}

} // namespace

build_queue::build_queue(const store_layout& layout) : db_(queue_path(layout), true) {
  db_.exec("pragma journal_mode = wal", "choosing the queue's journal");
  db_.exec("pragma synchronous = full", "making the queue durable");
  db_.exec("create table if not exists requests (id integer primary key autoincrement, paths text not null, "
           "done integer not null default 0, results text, submitted integer not null, finished integer, "
           "settings text not null default '{}')",
           "making the queue's table");
  // A queue made before requests kept their client's settings.
  bool has_settings = false;
  sqlite_stmt columns(db_, "pragma table_info(requests)", "reading the queue's columns");
  while (columns.step())
    has_settings = has_settings || columns.text(1) == "settings";
  if (!has_settings)
    db_.exec("alter table requests add column settings text not null default '{}'",
             "adding the requests' settings to the queue");
}

uint64_t build_queue::submit(const std::vector<std::string>& paths,
                             const std::map<std::string, std::string>& settings) {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite_stmt(db_, "insert into requests (paths, submitted, settings) values (?, ?, ?)", "queueing a build request")
      .bind(nlohmann::json(paths).dump())
      .bind(static_cast<int64_t>(std::time(nullptr)))
      .bind(nlohmann::json(settings).dump())
      .run();
  return static_cast<uint64_t>(db_.last_insert_rowid());
}

void build_queue::finish(uint64_t id, const std::string& results) {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite_stmt(db_, "update requests set done = 1, results = ?, finished = ? where id = ?",
              "recording a build request's results")
      .bind(results)
      .bind(static_cast<int64_t>(std::time(nullptr)))
      .bind(static_cast<int64_t>(id))
      .run();
}

queued_build build_queue::row(sqlite_stmt& s) {
  queued_build q;
  q.id = static_cast<uint64_t>(s.integer(0));
  auto paths = nlohmann::json::parse(s.text(1), nullptr, false);
  if (!paths.is_array())
    throw error("build request " + std::to_string(q.id) + " in the queue is damaged (its paths are not a list)");
  for (auto& p : paths)
    q.paths.push_back(p.is_string() ? p.get<std::string>() : std::string());
  q.done = s.integer(2) != 0;
  q.results = s.optional_text(3).value_or("");
  q.submitted = s.integer(4);
  q.finished = s.is_null(5) ? 0 : s.integer(5);
  auto settings = nlohmann::json::parse(s.text(6), nullptr, false);
  if (!settings.is_object())
    throw error("build request " + std::to_string(q.id) + " in the queue is damaged (its settings are not an object)");
  for (auto& [name, value] : settings.items())
    q.settings[name] = value.is_string() ? value.get<std::string>() : value.dump();
  return q;
}

std::optional<queued_build> build_queue::get(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite_stmt s(db_, "select id, paths, done, results, submitted, finished, settings from requests where id = ?",
                "looking up a build request");
  s.bind(static_cast<int64_t>(id));
  if (!s.step())
    return std::nullopt;
  return row(s);
}

std::vector<queued_build> build_queue::unfinished() {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite_stmt s(db_, "select id, paths, done, results, submitted, finished, settings from requests where done = 0 "
                "order by id",
                "listing unfinished build requests");
  std::vector<queued_build> out;
  while (s.step())
    out.push_back(row(s));
  return out;
}

} // namespace kiln
