// Which derivations the runs of one engine_host (kilnd's clients) have
// goals for, counted across runs. A run that is cancelled (its client hung
// up, or one of its builds failed) leaves a build running when another
// run has a goal for the same derivation: that client still wants it, and
// killing it would only make its own goal build it again. No CAF here.
#pragma once

#include <map>
#include <mutex>
#include <string>

namespace kiln {

class shared_interest {
public:
  void add(const std::string& drv);
  void remove(const std::string& drv);
  // True if more than one goal (the asker's) is counted for `drv`.
  bool wanted_elsewhere(const std::string& drv) const;

private:
  mutable std::mutex mutex_;
  std::map<std::string, unsigned> goals_;
};

} // namespace kiln
