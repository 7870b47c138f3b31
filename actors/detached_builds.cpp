#include "actors/detached_builds.hpp"

#include "actors/build_settings.hpp"
#include "actors/session.hpp"
#include "messages/build_json.hpp"
#include "store/io/error.hpp"
#include "store/local/temp_roots.hpp"

#include <nlohmann/json.hpp>

#include <iostream>
#include <thread>

namespace kiln {

namespace {

std::vector<goal_request> goals_of(const std::vector<std::string>& paths) {
  std::vector<goal_request> goals;
  for (auto& p : paths) {
    auto w = daemon::parse_derived_path(p);
    if (!w.outputs)
      throw format_error("'" + p + "' names no derivation's outputs (DRV!OUTPUTS or DRV!*)");
    goals.push_back({w.path.full(), *w.outputs});
  }
  return goals;
}

} // namespace

detached_builds::detached_builds(const store_layout& layout, engine_host& engine, std::function<settings()> config)
  : layout_(layout), engine_(engine), config_(std::move(config)), queue_(layout) {
  for (auto& q : queue_.unfinished()) {
    std::cerr << "kilnd: resuming detached build " << q.id << '\n';
    start(std::move(q));
  }
}

detached_builds::~detached_builds() {
  std::unique_lock<std::mutex> lock(mutex_);
  stopping_ = true;
  for (auto& [id, job] : running_)
    job->cancel();
  finished_.notify_all();
  finished_.wait(lock, [this] { return active_ == 0; });
}

uint64_t detached_builds::submit(const std::vector<std::string>& paths,
                                 const std::map<std::string, std::string>& client_settings) {
  goals_of(paths); // refused before it is queued
  settings check = config_();
  for (auto& [name, value] : client_settings)
    check.set(name, value, "the client's settings"); // as they will be applied, or refused now
  uint64_t id = queue_.submit(paths, client_settings);
  auto q = queue_.get(id);
  start(std::move(*q));
  return id;
}

// A thread of its own, detached (a finished thread is gone at once, not
// kept until kilnd ends); the destructor waits until none runs.
void detached_builds::start(queued_build q) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++active_;
  std::thread([this, q = std::move(q)] {
    run(q);
    std::lock_guard<std::mutex> done(mutex_);
    --active_;
    finished_.notify_all(); // under the lock: the destructor cannot go before it
  }).detach();
}

// On a thread of its own: the run, then its results into the queue. A run
// cancelled because kilnd stops is not recorded: it runs again next time.
void detached_builds::run(queued_build q) {
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  try {
    auto roots = std::make_shared<temp_roots>(layout_.state_dir(), std::string(default_store_dir),
                                              "kilnd-detached-" + std::to_string(q.id));
    settings config = config_();
    for (auto& [name, value] : q.settings)
      config.set(name, value, "detached build " + std::to_string(q.id) + "'s settings");
    std::shared_ptr<engine_job> job = engine_.start(std::make_shared<local_store>(layout_, roots),
                                                    build_options_from(config), goals_of(q.paths), {});
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_)
        job->cancel();
      running_[q.id] = job;
    }
    engine_run r = job->result();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running_.erase(q.id);
      if (stopping_)
        return;
    }
    for (auto& b : r.all)
      results.push_back(build_result_json(b));
  } catch (const std::exception& e) {
    build_result failed;
    failed.error = std::string("the detached build could not run: ") + e.what();
    failed.top_level = true;
    results.push_back(build_result_json(failed));
  }
  try {
    queue_.finish(q.id, results.dump());
  } catch (const std::exception& e) {
    std::cerr << "kilnd: recording detached build " << q.id << ": " << e.what() << '\n';
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ended_.insert(q.id);
  }
  finished_.notify_all();
}

std::optional<std::string> detached_builds::status(uint64_t id, bool wait, const std::function<bool()>& give_up) {
  std::optional<queued_build> q = queue_.get(id);
  if (!q)
    return std::nullopt;
  if (wait && !q->done) {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_ && !ended_.count(id)) {
      finished_.wait_for(lock, std::chrono::milliseconds(200));
      if (give_up && give_up())
        break;
    }
    lock.unlock();
    q = queue_.get(id);
  }
  nlohmann::ordered_json j;
  j["id"] = q->id;
  j["paths"] = q->paths;
  j["done"] = q->done;
  j["submitted"] = q->submitted;
  j["finished"] = q->finished;
  j["results"] = q->done ? nlohmann::ordered_json::parse(q->results, nullptr, false) : nlohmann::ordered_json::array();
  return j.dump();
}

} // namespace kiln
