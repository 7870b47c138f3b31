#include "actors/shared_interest.hpp"

namespace kiln {

void shared_interest::add(const std::string& drv) {
  std::lock_guard<std::mutex> g(mutex_);
  ++goals_[drv];
}

void shared_interest::remove(const std::string& drv) {
  std::lock_guard<std::mutex> g(mutex_);
  auto it = goals_.find(drv);
  if (it != goals_.end() && --it->second == 0)
    goals_.erase(it);
}

bool shared_interest::wanted_elsewhere(const std::string& drv) const {
  std::lock_guard<std::mutex> g(mutex_);
  auto it = goals_.find(drv);
  return it != goals_.end() && it->second > 1;
}

} // namespace kiln
