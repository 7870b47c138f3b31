#include "actors/shared_goals.hpp"

#include <vector>

namespace kiln {

void shared_goals::add_interest(const std::string& drv) {
  std::lock_guard<std::mutex> g(mutex_);
  ++interest_[drv];
}

void shared_goals::remove_interest(const std::string& drv) {
  std::lock_guard<std::mutex> g(mutex_);
  auto it = interest_.find(drv);
  if (it != interest_.end() && --it->second == 0)
    interest_.erase(it);
}

bool shared_goals::wanted(const std::string& drv) const {
  std::lock_guard<std::mutex> g(mutex_);
  return interest_.count(drv) > 0;
}

void shared_goals::offer(const std::string& profile, const std::string& drv, const scheduler_actor& owner) {
  std::lock_guard<std::mutex> g(mutex_);
  offers_.emplace(std::make_pair(profile, drv), owner);
}

void shared_goals::withdraw(const std::string& profile, const std::string& drv, const scheduler_actor& owner) {
  std::lock_guard<std::mutex> g(mutex_);
  auto it = offers_.find({profile, drv});
  if (it != offers_.end() && it->second == owner)
    offers_.erase(it);
}

std::optional<scheduler_actor> shared_goals::join(const std::string& profile, const std::string& drv,
                                                  const scheduler_actor& me) {
  std::lock_guard<std::mutex> g(mutex_);
  auto it = offers_.find({profile, drv});
  if (it == offers_.end() || it->second == me)
    return std::nullopt;
  ++interest_[drv];
  return it->second;
}

uint64_t shared_goals::watch(const std::string& drv, line_sink sink) {
  std::lock_guard<std::mutex> g(mutex_);
  uint64_t id = next_watch_++;
  watchers_.emplace(drv, std::make_pair(id, std::move(sink)));
  return id;
}

void shared_goals::unwatch(uint64_t id) {
  std::lock_guard<std::mutex> g(mutex_);
  for (auto it = watchers_.begin(); it != watchers_.end(); ++it)
    if (it->second.first == id)
      return void(watchers_.erase(it));
}

void shared_goals::tell_watchers(const std::string& drv, const std::string& line) const {
  std::vector<line_sink> sinks;
  {
    std::lock_guard<std::mutex> g(mutex_);
    for (auto [it, end] = watchers_.equal_range(drv); it != end; ++it)
      sinks.push_back(it->second.second);
  }
  for (auto& sink : sinks)
    sink(drv, line);
}

} // namespace kiln
