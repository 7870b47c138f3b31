// What the runs of one engine_host (kilnd's clients) share of their goals:
// - Offers: a run's goal for a derivation, under the build options it runs
//   with (a profile), that another run wanting the same derivation with
//   the same options joins instead of starting a goal of its own (design:
//   "a second request for the same derivation joins the existing goal").
// - Interest: which derivations each run still wants, counted across runs.
//   A run that is cancelled (its client hung up, or a build failed without
//   --keep-going) withdraws its interest and cancels only the goals nobody
//   else wants; the others, and what they wait for, go on for their sake.
// - Watchers: a run that joined another's goal sees its build's log lines.
#pragma once

#include "messages/interfaces.hpp"

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace kiln {

class shared_goals {
public:
  void add_interest(const std::string& drv);
  void remove_interest(const std::string& drv);
  // True if some run (not cancelled) wants `drv`.
  bool wanted(const std::string& drv) const;

  // Offers `owner`'s goal for `drv` under `profile`, unless another run
  // offers one already.
  void offer(const std::string& profile, const std::string& drv, const scheduler_actor& owner);
  void withdraw(const std::string& profile, const std::string& drv, const scheduler_actor& owner);
  // The scheduler of another run that offers a goal for `drv` under
  // `profile`, with an interest in `drv` counted for the joiner in the same
  // step (it gives it back when the joined goal has answered).
  std::optional<scheduler_actor> join(const std::string& profile, const std::string& drv, const scheduler_actor& me);

  using line_sink = std::function<void(const std::string& drv, const std::string& line)>;
  // `sink` gets the lines of `drv`'s build log from now on, until unwatched.
  uint64_t watch(const std::string& drv, line_sink sink);
  void unwatch(uint64_t id);
  // A line of `drv`'s build log, for the runs that joined its goal.
  void tell_watchers(const std::string& drv, const std::string& line) const;

private:
  mutable std::mutex mutex_;
  std::map<std::string, unsigned> interest_;
  std::map<std::pair<std::string, std::string>, scheduler_actor> offers_;
  std::multimap<std::string, std::pair<uint64_t, line_sink>> watchers_;
  uint64_t next_watch_ = 1;
};

} // namespace kiln
